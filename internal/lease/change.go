package visibility

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

const maxBatch = 10

// Release makes msgs visible again at once, in batches, and removes their
// leases: they were never started, or their handlers were cancelled.
func (m *Manager) Release(ctx context.Context, msgs []*message.Message) {
	if len(msgs) == 0 {
		return
	}
	m.changeAndRemove(ctx, msgs, 0)
	m.metrics.MessagesReleased.Add(float64(len(msgs)))
}

func (m *Manager) changeAndRemove(ctx context.Context, msgs []*message.Message, d time.Duration) {
	timeouts := make([]time.Duration, len(msgs))
	for i := range timeouts {
		timeouts[i] = d
	}
	m.change(ctx, msgs, timeouts, false, func(*message.Message, time.Time) {}, func(*message.Message) {})
	for _, msg := range msgs {
		m.Remove(msg)
	}
}

// change sends ChangeMessageVisibilityBatch for msgs, ten to a call, calls
// at most MaxConcurrentBatches at once. ok is called for each entry SQS
// changed, with its new deadline, gone for each whose receipt handle no longer holds the message.
// Transient failures (throttling, 5xx, network) are retried with backoff
// until ctx is done.
// heartbeat says whether these calls count as extension batches.
func (m *Manager) change(ctx context.Context, msgs []*message.Message, timeouts []time.Duration, heartbeat bool,
	ok func(*message.Message, time.Time), gone func(*message.Message)) {
	sem := make(chan struct{}, m.cfg.MaxConcurrentBatches)
	var wg sync.WaitGroup
	for start := 0; start < len(msgs); start += maxBatch {
		end := min(start+maxBatch, len(msgs))
		sem <- struct{}{}
		wg.Add(1)
		go func(batch []*message.Message, ts []time.Duration) {
			defer func() { <-sem; wg.Done() }()
			m.changeBatch(ctx, batch, ts, heartbeat, ok, gone)
		}(msgs[start:end], timeouts[start:end])
	}
	wg.Wait()
}

func (m *Manager) changeBatch(ctx context.Context, batch []*message.Message, ts []time.Duration, heartbeat bool,
	ok func(*message.Message, time.Time), gone func(*message.Message)) {
	pending := make(map[string]int, len(batch)) // entry id → index in batch
	for i := range batch {
		pending[strconv.Itoa(i)] = i
	}
	delay := 100 * time.Millisecond
	for attempt := 1; len(pending) > 0; attempt++ {
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, 0, len(pending))
		for id, i := range pending {
			entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{
				Id:                aws.String(id),
				ReceiptHandle:     aws.String(batch[i].ReceiptHandle),
				VisibilityTimeout: int32(ts[i] / time.Second),
			})
		}
		sent := m.cfg.Now() // SQS counts the new timeout from when it gets the call: no earlier
		callCtx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
		out, err := m.api.ChangeMessageVisibilityBatch(callCtx, &sqs.ChangeMessageVisibilityBatchInput{
			QueueUrl: aws.String(m.cfg.QueueURL), Entries: entries,
		})
		cancel()
		if heartbeat {
			m.metrics.ExtensionBatches.Inc()
		}
		if err != nil {
			if ctx.Err() != nil || !sqsapi.IsTransient(err) || attempt >= 5 {
				m.log.Warn("change visibility failed; the messages keep their current deadline",
					zap.Int("messages", len(pending)), zap.Int("attempt", attempt), zap.Error(err))
				return
			}
			m.log.Info("change visibility failed; will retry",
				zap.Int("messages", len(pending)), zap.Duration("retry_in", delay), zap.Error(err))
			if !backoff.Sleep(ctx, backoff.Jitter(delay)) {
				return
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		for _, s := range out.Successful {
			if i, found := pending[aws.ToString(s.Id)]; found {
				ok(batch[i], sent.Add(ts[i]))
				delete(pending, aws.ToString(s.Id))
			}
		}
		retry := false
		for _, f := range out.Failed {
			i, found := pending[aws.ToString(f.Id)]
			if !found {
				continue
			}
			if sqsapi.IsEntryTransient(f) && attempt < 5 {
				retry = true
				continue
			}
			delete(pending, aws.ToString(f.Id))
			if sqsapi.IsHandleGone(sqsapi.EntryCode(f)) {
				deleting := m.handled(batch[i])
				gone(batch[i])
				if deleting {
					continue // its delete got there first
				}
				m.log.Warn("change visibility refused: the receipt handle is no longer valid; the lease is lost, "+
					"so the handler is cancelled and the message will not be deleted with this handle",
					zap.String("message_id", batch[i].ID), zap.String("error_code", sqsapi.EntryError(f)))
				continue
			}
			m.log.Warn("change visibility entry failed; the message keeps its current deadline",
				zap.String("message_id", batch[i].ID), zap.String("error_code", sqsapi.EntryError(f)))
		}
		if !retry {
			return
		}
		if !backoff.Sleep(ctx, backoff.Jitter(delay)) {
			return
		}
		delay = min(2*delay, 5*time.Second)
	}
}
