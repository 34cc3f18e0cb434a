package visibility

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/message"
)

// changeVisibility is the batch call of every visibility change.
func (t *Table) changeVisibility(ctx context.Context, entries []batch.Entry) ([]string, []types.BatchResultErrorEntry, error) {
	req := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(entries))
	for i, e := range entries {
		req[i] = types.ChangeMessageVisibilityBatchRequestEntry{
			Id:                batch.IDRef(i),
			ReceiptHandle:     &e.Msg.ReceiptHandle, // not changed after fetch: shared, not copied
			VisibilityTimeout: int32(e.Visibility / time.Second),
		}
	}
	out, err := t.api.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{
		QueueUrl: aws.String(t.cfg.QueueURL), Entries: req,
	})
	if err != nil {
		return nil, nil, err
	}
	return batch.IDs(out.Successful, func(s types.ChangeMessageVisibilityBatchResultEntry) *string { return s.Id }), out.Failed, nil
}

// extendVisibility is changeVisibility counted as a heartbeat's call.
func (t *Table) extendVisibility(ctx context.Context, entries []batch.Entry) ([]string, []types.BatchResultErrorEntry, error) {
	t.metrics.ExtensionBatches.Inc()
	return t.changeVisibility(ctx, entries)
}

// Release makes msgs visible again at once, in batches, and removes their
// leases: they were never started, or their handlers were cancelled.
func (t *Table) Release(ctx context.Context, msgs []*message.Message) {
	if len(msgs) == 0 {
		return
	}
	entries := make([]batch.Entry, len(msgs))
	for i, msg := range msgs {
		entries[i] = batch.Entry{Msg: msg}
	}
	t.changes.Send(ctx, entries)
	for _, msg := range msgs {
		t.Remove(msg)
	}
	t.metrics.MessagesReleased.Add(float64(len(msgs)))
}

// Retry ends msg's lease with a visibility change to delay: SQS delivers it
// again after that. The change shares a batch call with other retries of
// the next few milliseconds; Retry returns once it was sent, or when ctx is
// done. The lease is removed whatever SQS answers; if the change fails the
// message comes back when its current lease runs out.
func (t *Table) Retry(ctx context.Context, msg *message.Message, delay time.Duration) {
	t.metrics.MessagesRetried.Inc()
	// SQS counts in whole seconds: round up, so that a delay under a
	// second is not none.
	delay = (delay + time.Second - 1).Truncate(time.Second)
	done := make(chan struct{})
	err := t.changes.Add(ctx, batch.Entry{Msg: msg, Visibility: delay, Done: func(e batch.Entry, _ batch.Result) {
		t.Remove(e.Msg)
		close(done)
	}})
	if err != nil {
		t.Remove(msg)
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}
