package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// pickup measures pickup latency on an idle worker: messages are sent one at a
// time, each once the one before reached its handler; send → handler
// start, less the median SendMessage round trip measured by the same
// sends (a consumer with no overhead of its own needs about one round
// trip: the send's way in and the long poll's way out).
func (e *env) pickup(ctx context.Context) error {
	n := e.opts.count(200, 5)
	q, err := e.fill(ctx, "pickup", sqstest.QueueOptions{}, nil)
	if err != nil {
		return err
	}
	started := make(chan handlerStart, 16)
	h := sqsworker.HandlerFunc(func(_ context.Context, msg *sqsworker.Message) error {
		at := time.Now()
		i, err := strconv.Atoi(msg.Body)
		if err != nil {
			return fmt.Errorf("unexpected body %q", msg.Body)
		}
		select {
		case started <- handlerStart{i, at}:
		default: // a redelivery nobody waits for
		}
		return nil
	})
	stopProf, err := e.prof.start(scenarioPickup)
	if err != nil {
		return err
	}
	w, err := e.startWorker(ctx, q.URL, h, nil)
	if err != nil {
		return err
	}
	client := sqstest.NewClient(e.endpoint)
	e.progress("%s: %d messages sent one at a time to an idle worker", scenarioPickup, n)
	var pickups, rtts []time.Duration
	// Message -1 warms up the path (connections, first poll) and is not counted.
	for i := -1; i < n && err == nil; i++ {
		var sent time.Time
		sent, err = sendOne(ctx, client, q.URL, i)
		if err != nil {
			break
		}
		rtt := time.Since(sent)
		err = waitStart(ctx, started, i, func(at time.Time) {
			if i >= 0 {
				pickups = append(pickups, at.Sub(sent))
				rtts = append(rtts, rtt)
			}
		})
	}
	if err == nil {
		err = w.waitDeleted(ctx, n+1, time.Minute)
	}
	if err := firstErr(err, w.stop, stopProf); err != nil {
		return err
	}
	e.note("%s is SendMessage start → handler start, less the median SendMessage round trip of the same sends.", scenarioPickup)
	slices.Sort(pickups)
	slices.Sort(rtts)
	server := quantile(rtts, 0.5)
	p50, p99 := quantile(pickups, 0.5)-server, quantile(pickups, 0.99)-server
	setting := fmt.Sprintf("%d messages, %s, wait %s", n, e.fetchersSetting(), e.opts.WaitTime)
	limit := fmt.Sprintf("server round trip (median SendMessage) %.1f ms", ms(server))
	e.add(scenarioPickup, "pickup latency p50 (send → handler start, less server round trip)", ms(p50), "ms", atMost(25),
		limit, ms(server), fmt.Sprintf("raw %.1f ms; %s", ms(quantile(pickups, 0.5)), setting))
	e.add(scenarioPickup, "pickup latency p99 (same)", ms(p99), "ms", nil,
		limit, ms(server), fmt.Sprintf("raw %.1f ms", ms(quantile(pickups, 0.99))))
	return nil
}

// handlerStart is message i's handler starting at at.
type handlerStart struct {
	i  int
	at time.Time
}

func sendOne(ctx context.Context, client *sqs.Client, url string, i int) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sent := time.Now()
	_, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(strconv.Itoa(i))})
	if err != nil {
		return sent, fmt.Errorf("send message %d: %w", i, err)
	}
	return sent, nil
}

// waitStart waits for message i's handler to start and passes its start
// time to got; starts of other messages (redeliveries) are skipped.
func waitStart(ctx context.Context, started <-chan handlerStart, i int, got func(time.Time)) error {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case s := <-started:
			if s.i == i {
				got(s.at)
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("message %d did not reach its handler within 30s", i)
		}
	}
}

// quantile is the q-quantile of sorted ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
