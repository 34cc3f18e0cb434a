package fetch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// take takes up to n messages of the MaxMessages budget; 0 with done set
// means every message of it was received.
func (f *Fetcher) take(n int) (took int, done bool) {
	if f.cfg.MaxMessages <= 0 {
		return n, false
	}
	for {
		left := f.budget.Load()
		if left <= 0 {
			return 0, f.received.Load() >= int64(f.cfg.MaxMessages)
		}
		k := min(int64(n), left)
		if f.budget.CompareAndSwap(left, left-k) {
			return int(k), false
		}
	}
}

func (f *Fetcher) loop(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		if f.cfg.Gate != nil && f.cfg.Gate.WaitReceive(ctx) != nil {
			return nil
		}
		want, done := f.take(sqsapi.MaxBatchEntries)
		if done {
			f.exhaustOnce.Do(func() { close(f.exhausted) })
			return nil
		}
		if want == 0 { // the rest of the budget is out with other polls
			backoff.Sleep(ctx, backoff.Jitter(f.cfg.ErrorBackoffMin))
			continue
		}
		n, err := f.leases.Reserve(ctx, want)
		if err != nil {
			f.giveBack(want)
			return nil
		}
		f.giveBack(want - n)
		if ctx.Err() != nil { // stopped while waiting for room: no new receive
			f.giveBack(n)
			f.leases.Unreserve(n)
			return nil
		}
		msgs, err := f.receive(n)
		if err != nil {
			f.giveBack(n)
			f.leases.Unreserve(n)
			if errors.Is(err, errPollCancelled) {
				return nil
			}
			if sqsapi.IsQueueMissing(err) {
				return fmt.Errorf("receive from %s: %w (create it, or check the queue URL and the region)", f.cfg.QueueURL, ErrQueueMissing)
			}
			failures++
			wait := backoff.Jitter(backoff.Exponential(failures, f.cfg.ErrorBackoffMin, f.cfg.ErrorBackoffMax))
			switch {
			case sqsapi.IsResponseLost(err):
				// Logged every time: these messages are late, not lost,
				// and this line says until when.
				f.metrics.ReceivesOrphaned.Inc()
				f.log.Warn("receive lost its response after SQS answered; the messages it was handed (up to max_messages) stay invisible until visible_again_by",
					zap.Int("max_messages", n), zap.Time("visible_again_by", time.Now().Add(f.cfg.VisibilityTimeout)),
					zap.Duration("retry_in", wait), zap.Error(err))
			case failures == 1 || failures%10 == 0:
				f.log.Warn("receive failed; will retry", zap.Int("consecutive_failures", failures),
					zap.Duration("retry_in", wait), zap.Error(err))
			}
			backoff.Sleep(ctx, wait)
			continue
		}
		if failures > 0 {
			f.log.Info("receive recovered", zap.Int("after_failures", failures))
			failures = 0
		}
		f.health.ReceiveSucceeded()
		f.leases.Unreserve(n - len(msgs))
		f.giveBack(n - len(msgs))
		if len(msgs) > 0 {
			f.received.Add(int64(len(msgs)))
			f.lastReceived.Store(time.Now().UnixNano())
		}
		end := f.adapt(ctx, n, len(msgs))
		if len(msgs) == 0 {
			f.metrics.ReceiveEmpty.Inc()
			if end {
				return nil
			}
			if f.cfg.WaitTime == 0 {
				backoff.Sleep(ctx, backoff.Jitter(f.cfg.ErrorBackoffMin))
			}
			continue
		}
		f.metrics.MessagesReceived.Add(float64(len(msgs)))
		f.metrics.ReceiveBatchSize.Observe(float64(len(msgs)))
		// Register before buffering: a message waiting for a handler is
		// kept alive too.
		f.leases.Add(msgs...)
		if ctx.Err() != nil {
			f.leases.Release(context.WithoutCancel(ctx), msgs)
			return nil
		}
		for _, m := range msgs {
			f.out <- m // never blocks for long: out holds the in-flight limit
		}
	}
	return nil
}

// noRetry makes one attempt of a receive. If an attempt fails after the
// server handed it messages (a connection cut mid-response), those stay
// invisible for a whole visibility timeout whatever happens next; an SDK
// retry would only add a second poll on top. The fetch loop backs off
// and polls again instead.
func noRetry(o *sqs.Options) { o.RetryMaxAttempts = 1 }

// giveBack returns n untaken messages to the MaxMessages budget.
func (f *Fetcher) giveBack(n int) {
	if f.cfg.MaxMessages > 0 && n > 0 {
		f.budget.Add(int64(n))
	}
}

// Every receive asks for every attribute; the SDK only reads these.
var (
	allSystemAttributes  = []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}
	allMessageAttributes = []string{"All"}
)

func (f *Fetcher) receive(n int) ([]*message.Message, error) {
	ctx, cancel := context.WithTimeout(f.pollCtx, f.cfg.WaitTime+pollSlack)
	defer cancel()
	f.polling.Add(1)
	defer f.polling.Add(-1)
	out, err := f.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    &f.cfg.QueueURL,
		MaxNumberOfMessages:         int32(n),
		WaitTimeSeconds:             int32(f.cfg.WaitTime / time.Second),
		VisibilityTimeout:           int32(f.cfg.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: allSystemAttributes,
		MessageAttributeNames:       allMessageAttributes,
	}, noRetry)
	if err != nil {
		if f.pollCtx.Err() != nil { // cancelled at stop, not failed
			f.metrics.ReceivesCancelled.Inc()
			f.log.Debug("long poll cancelled at stop", zap.Int("max_messages", n),
				zap.Time("visible_again_by", time.Now().Add(f.cfg.VisibilityTimeout)), zap.Error(err))
			return nil, errPollCancelled
		}
		return nil, fmt.Errorf("receive up to %d messages: %w", n, err)
	}
	now := time.Now()
	msgs := make([]*message.Message, len(out.Messages))
	for i, m := range out.Messages {
		msgs[i] = message.FromSQS(f.cfg.QueueURL, m, now)
		f.metrics.ObserveMessageAge(msgs[i].SentAt, now)
	}
	return msgs, nil
}
