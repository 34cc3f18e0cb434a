package sqstest

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

var queueSeq atomic.Int64

// QueueOptions shape a test queue.
type QueueOptions struct {
	// VisibilityTimeout in seconds; 0 leaves the server's default (30).
	VisibilityTimeout int
	// MaxReceiveCount > 0 gives the queue a dead-letter queue.
	MaxReceiveCount int
	FIFO            bool
}

// Queue is a created queue and, when asked for, its dead-letter queue.
type Queue struct {
	Name, URL, ARN string
	DLQURL         string
}

// CreateQueue creates a uniquely named queue (prefix plus a sequence
// number), with a DLQ and redrive policy when opts.MaxReceiveCount > 0.
func (s *Server) CreateQueue(ctx context.Context, prefix string, opts QueueOptions) (Queue, error) {
	c := s.Client()
	name := fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e6, queueSeq.Add(1))
	suffix := ""
	attrs := map[string]string{}
	if opts.FIFO {
		suffix = ".fifo"
		attrs["FifoQueue"] = "true"
	}
	if opts.VisibilityTimeout > 0 {
		attrs["VisibilityTimeout"] = strconv.Itoa(opts.VisibilityTimeout)
	}
	var q Queue
	if opts.MaxReceiveCount > 0 {
		dlqAttrs := map[string]string{}
		if opts.FIFO {
			dlqAttrs["FifoQueue"] = "true"
		}
		dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq" + suffix), Attributes: dlqAttrs})
		if err != nil {
			return q, fmt.Errorf("create DLQ: %w", err)
		}
		q.DLQURL = aws.ToString(dlq.QueueUrl)
		arn, err := s.QueueARN(ctx, q.DLQURL)
		if err != nil {
			return q, err
		}
		attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, arn, opts.MaxReceiveCount)
	}
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + suffix), Attributes: attrs})
	if err != nil {
		return q, fmt.Errorf("create queue: %w", err)
	}
	q.Name, q.URL = name+suffix, aws.ToString(out.QueueUrl)
	q.ARN, err = s.QueueARN(ctx, q.URL)
	return q, err
}

// QueueARN returns a queue's ARN.
func (s *Server) QueueARN(ctx context.Context, url string) (string, error) {
	out, err := s.Client().GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("get ARN of %s: %w", url, err)
	}
	return out.Attributes[string(types.QueueAttributeNameQueueArn)], nil
}

// Depth is a queue's approximate message counts.
type Depth struct{ Visible, InFlight, Delayed int }

// QueueDepth reads a queue's approximate counts.
func (s *Server) QueueDepth(ctx context.Context, url string) (Depth, error) {
	out, err := s.Client().GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	if err != nil {
		return Depth{}, fmt.Errorf("get depth of %s: %w", url, err)
	}
	n := func(k types.QueueAttributeName) int { v, _ := strconv.Atoi(out.Attributes[string(k)]); return v }
	return Depth{
		Visible:  n(types.QueueAttributeNameApproximateNumberOfMessages),
		InFlight: n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		Delayed:  n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}, nil
}

// SendBodies sends bodies in batches of ten, several batches at once. On a
// FIFO queue, group(i) names each message's group and batches go one at a
// time, so that each group's order is the order of bodies.
func (s *Server) SendBodies(ctx context.Context, url string, bodies []string, group func(i int) string) error {
	c := s.Client()
	errc := make(chan error, 1)
	parallel := 8
	if group != nil {
		parallel = 1 // batches sent at once would interleave a group's order
	}
	sem := make(chan struct{}, parallel)
	for start := 0; start < len(bodies); start += 10 {
		end := min(start+10, len(bodies))
		entries := make([]types.SendMessageBatchRequestEntry, 0, 10)
		for i := start; i < end; i++ {
			e := types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(bodies[i])}
			if group != nil {
				e.MessageGroupId = aws.String(group(i))
				e.MessageDeduplicationId = aws.String(strconv.Itoa(i))
			}
			entries = append(entries, e)
		}
		select {
		case err := <-errc:
			return err
		case sem <- struct{}{}:
		}
		go func() {
			defer func() { <-sem }()
			out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
			if err == nil && len(out.Failed) > 0 {
				err = fmt.Errorf("send: %d entries failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
			}
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		}()
	}
	for i := 0; i < cap(sem); i++ {
		sem <- struct{}{}
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
