package bench

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// fill creates a queue and sends bodies to it.
func (e *env) fill(ctx context.Context, prefix string, opts sqstest.QueueOptions, bodies []string) (sqstest.Queue, error) {
	q, err := e.createQueue(ctx, prefix, opts)
	if err != nil {
		return q, err
	}
	if len(bodies) > 0 {
		e.progress("%s: sending %d messages", prefix, len(bodies))
		if err := e.srv.SendBodies(ctx, q.URL, bodies, nil); err != nil {
			return q, err
		}
	}
	return q, nil
}

// createQueue creates a queue that dropQueues deletes.
func (e *env) createQueue(ctx context.Context, prefix string, opts sqstest.QueueOptions) (sqstest.Queue, error) {
	q, err := e.srv.CreateQueue(ctx, prefix, opts)
	if err == nil {
		e.queues = append(e.queues, q.URL)
		if q.DLQURL != "" {
			e.queues = append(e.queues, q.DLQURL)
		}
	}
	return q, err
}

// dropQueues deletes the queues created so far, once a scenario or a
// round is done with them, so that the server does not carry every
// earlier queue into what is measured next.
func (e *env) dropQueues() {
	for _, url := range e.queues {
		e.dropQueue(url)
	}
	e.queues = e.queues[:0]
}

// dropQueue deletes a queue a scenario filled, so the server does not
// carry its messages into the next scenario.
func (e *env) dropQueue(url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = e.srv.Client().DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
}
