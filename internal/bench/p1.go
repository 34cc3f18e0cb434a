package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// p1Messages is P1's (and BIN's) message count.
func (e *env) p1Messages() int {
	if e.opts.P1Messages > 0 {
		return e.opts.P1Messages
	}
	return e.opts.count(50000, 20)
}

// p1 runs P1 (throughput against a raw SDK loop) and P2 (requests per
// message, from the same worker run).
func (e *env) p1(ctx context.Context) error {
	n := e.p1Messages()
	if want := e.opts.count(50000, 20); n != want {
		e.note("P1, P2 and BIN consume %s messages instead of %s (--p1-messages), to keep the run short.", thousands(float64(n)), thousands(float64(want)))
	}
	if err := e.warmUp(ctx); err != nil {
		return err
	}
	q, err := e.fill(ctx, "p1", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	var handled atomic.Int64
	all := make(chan struct{})
	h := handler.Func(func(context.Context, *message.Message) error {
		if handled.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	stopProf, err := e.prof.start("P1")
	if err != nil {
		return err
	}
	e.progress("P1: worker consumes %d messages (no-op handler)", n)
	w, err := e.startWorker(ctx, q.URL, h, nil)
	if err != nil {
		return err
	}
	t0 := time.Now()
	err = waitClosed(ctx, all, 10*time.Minute, "every message handled")
	if err == nil {
		err = w.waitDeleted(ctx, n, time.Minute)
	}
	took := time.Since(t0)
	reqs := w.requests()
	if serr := w.stop(); err == nil {
		err = serr
	}
	if perr := stopProf(); err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	rate := float64(n) / took.Seconds()
	perMsg := sum(reqs) / float64(n)
	cfg := w.cfg
	setting := fmt.Sprintf("%s msgs, %d fetchers, concurrency %d", thousands(float64(n)), cfg.Fetchers, cfg.Concurrency)

	e.p1res.rate, e.p1res.perMsg = rate, perMsg
	rawPerMsg := 0.0
	if e.selected("P1") {
		qb, err := e.fill(ctx, "p1-raw", sqstest.QueueOptions{}, indexBodies(n))
		if err != nil {
			return err
		}
		e.progress("P1: raw SDK loop consumes %d messages with %d goroutines", n, cfg.Fetchers)
		raw, err := e.rawLoop(ctx, qb.URL, cfg.Fetchers, n)
		if err != nil {
			return err
		}
		rawPerMsg = raw.requests / float64(n)
		e.p1res.rawRate = raw.rate
		e.add("P1", "throughput: worker ÷ raw SDK loop", rate/raw.rate, "ratio", atLeast(0.95),
			fmt.Sprintf("raw loop %s (%d goroutines: receive 10 → delete batch)", format(raw.rate, "msg/s"), cfg.Fetchers),
			raw.rate, fmt.Sprintf("worker %s; %s", format(rate, "msg/s"), setting))
		if e.opts.RTT > 0 {
			limit := float64(cfg.Fetchers) * 10 / e.opts.RTT.Seconds()
			e.add("P1", "msg/s beside fetchers × 10 ÷ RTT", rate, "msg/s", nil,
				fmt.Sprintf("%d × 10 ÷ %s = %s (worker reaches %.2f of it)", cfg.Fetchers, e.opts.RTT, format(limit, "msg/s"), rate/limit),
				limit, setting)
		}
	}
	if e.selected("P2") {
		limit := "floor 0.200 (one receive and one delete per 10)"
		if rawPerMsg > 0 {
			limit += fmt.Sprintf("; raw loop %.3f", rawPerMsg)
		}
		e.add("P2", "SQS requests per message at saturation", perMsg, "req/msg", atMost(0.21), limit, 0.2,
			fmt.Sprintf("%s; %s", breakdown(reqs, n), setting))
	}
	return nil
}

// breakdown prints requests per message by action.
func breakdown(reqs map[string]float64, n int) string {
	short := map[string]string{"ReceiveMessage": "receive", "DeleteMessageBatch": "delete",
		"ChangeMessageVisibilityBatch": "visibility", "GetQueueAttributes": "attrs"}
	s := ""
	for _, a := range []string{"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch", "GetQueueAttributes"} {
		if v := reqs[a]; v > 0 {
			s += fmt.Sprintf("%s %.3f, ", short[a], v/float64(n))
		}
	}
	other := sum(reqs)
	for a := range short {
		other -= reqs[a]
	}
	return s + fmt.Sprintf("other %.3f", other/float64(n))
}

// warmUp runs the raw loop once over a scratch queue, so that the server's
// JIT is warm before the first figure is taken.
func (e *env) warmUp(ctx context.Context) error {
	n := e.opts.count(2000, 20)
	q, err := e.fill(ctx, "warmup", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	_, err = e.rawLoop(ctx, q.URL, e.opts.Fetchers, n)
	return err
}

type rawResult struct {
	rate     float64 // messages deleted per second
	requests float64 // requests sent in all
}

// rawLoop is the baseline: goroutines each receive up to ten with a long
// poll and delete what they got in one batch, as fast as they can, until n
// messages are deleted.
func (e *env) rawLoop(ctx context.Context, url string, goroutines, n int) (rawResult, error) {
	client := sqstest.NewClient(e.endpoint)
	wait := int32(e.opts.WaitTime / time.Second)
	var deleted, requests atomic.Int64
	var end time.Time
	var once sync.Once
	errc := make(chan error, goroutines)
	var wg sync.WaitGroup
	start := time.Now()
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deleted.Load() < int64(n) && ctx.Err() == nil {
				out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: wait,
				})
				requests.Add(1)
				if err != nil {
					errc <- fmt.Errorf("raw loop receive: %w", err)
					return
				}
				if len(out.Messages) == 0 {
					continue
				}
				entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
				for i, m := range out.Messages {
					entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
				}
				dout, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
				requests.Add(1)
				if err != nil {
					errc <- fmt.Errorf("raw loop delete: %w", err)
					return
				}
				if deleted.Add(int64(len(dout.Successful))) >= int64(n) {
					once.Do(func() { end = time.Now() })
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return rawResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return rawResult{}, err
	}
	return rawResult{rate: float64(n) / end.Sub(start).Seconds(), requests: float64(requests.Load())}, nil
}

// indexBodies returns n bodies, each its own index.
func indexBodies(n int) []string {
	b := make([]string, n)
	for i := range b {
		b[i] = strconv.Itoa(i)
	}
	return b
}

// waitClosed waits for ch to be closed.
func waitClosed(ctx context.Context, ch <-chan struct{}, within time.Duration, what string) error {
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("timed out after %s waiting for %s", within, what)
	}
}
