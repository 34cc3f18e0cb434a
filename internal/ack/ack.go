// Package ack owns the batch deleter: it coalesces the acknowledgements of
// succeeded messages into DeleteMessageBatch calls on the one batch sender,
// and keeps each lease registered until SQS confirms its delete.
package ack

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
)

// API is what the deleter needs from SQS.
type API interface {
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// Leases is what the deleter needs from the lease table.
type Leases interface {
	// Alive reports whether msg's receipt handle may still be used.
	Alive(msg *message.Message) bool
	// Remove drops msg's lease once its delete is settled.
	Remove(msg *message.Message)
}

// Config configures a Deleter.
type Config struct {
	QueueURL string
	// FlushInterval is how long an acknowledgement waits for nine others.
	// Defaults to batch.DefaultFlushInterval.
	FlushInterval time.Duration
	// MaxInFlightBatches bounds concurrent DeleteMessageBatch calls.
	// Defaults to batch.DefaultMaxInFlight.
	MaxInFlightBatches int
	// MaxPending is the backlog (queued and in flight) at which Delete
	// blocks, until the backlog falls below half of it. Defaults to
	// batch.DefaultMaxPending.
	MaxPending int
	// RequestTimeout bounds one call. Defaults to batch.DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// Deleter is the batch deleter. Start it, Delete from any goroutine, Stop
// once no more Deletes will come.
type Deleter struct {
	api     API
	leases  Leases
	log     *zap.Logger
	metrics *metrics.Metrics
	sender  *batch.Sender
	queue   *string
	done    func(batch.Entry, batch.Result) // d.settled, bound once
}

// New creates a Deleter. A delete is retried, whatever the error, for as
// long as its lease lives: a handled message's delete is worth every
// attempt, and a lost lease's handle is never used.
func New(cfg Config, api API, leases Leases, log *zap.Logger, m *metrics.Metrics) *Deleter {
	d := &Deleter{api: api, leases: leases, log: log.Named("ack"), metrics: m, queue: aws.String(cfg.QueueURL)}
	d.done = d.settled
	d.sender = batch.NewSender(batch.Config{
		Action: "delete", QueueURL: cfg.QueueURL,
		FlushInterval: cfg.FlushInterval, MaxInFlight: cfg.MaxInFlightBatches,
		MaxPending: cfg.MaxPending, RequestTimeout: cfg.RequestTimeout,
		Attempts: batch.UnlimitedAttempts, RetryAllErrors: true, Live: leases.Alive,
	}, d.call, d.log)
	return d
}

// Start launches the batching loop and its senders; they run until Stop.
func (d *Deleter) Start(ctx context.Context) error { return d.sender.Start(ctx) }

// Stop flushes everything queued and waits for every batch to settle, or
// for ctx to be done, after which unconfirmed deletes are abandoned (their
// messages come back: never lost, possibly handled twice). No Delete may be
// called after Stop. Stopping twice, or before Start, is harmless.
func (d *Deleter) Stop(ctx context.Context) error { return d.sender.Stop(ctx) }

// Delete queues msg's delete. It blocks while the backlog is high, or
// until ctx is done (then the message is not deleted and its lease is
// left as it is, and Delete returns ctx's error).
func (d *Deleter) Delete(ctx context.Context, msg *message.Message) error {
	return d.sender.Add(ctx, batch.Entry{Msg: msg, Done: d.done})
}

func (d *Deleter) call(ctx context.Context, entries []batch.Entry) ([]string, []types.BatchResultErrorEntry, error) {
	req := make([]types.DeleteMessageBatchRequestEntry, len(entries))
	for i, e := range entries {
		// The message is not changed after fetch: its handle is shared, not copied.
		req[i] = types.DeleteMessageBatchRequestEntry{Id: batch.IDRef(i), ReceiptHandle: &e.Msg.ReceiptHandle}
	}
	out, err := d.api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: d.queue, Entries: req})
	d.metrics.DeleteBatchSize.Observe(float64(len(entries)))
	if err != nil {
		return nil, nil, err
	}
	return batch.IDs(out.Successful, func(s types.DeleteMessageBatchResultEntry) *string { return s.Id }), out.Failed, nil
}

// settled ends msg's lease by what became of its delete.
func (d *Deleter) settled(e batch.Entry, r batch.Result) {
	msg := e.Msg
	switch r.Outcome {
	case batch.Applied:
		d.metrics.MessagesDeleted.Inc()
	case batch.Refused:
		d.log.Warn("delete entry failed; the message will be redelivered",
			zap.String("message_id", msg.ID), zap.String("error_code", r.Detail))
		d.metrics.DeleteFailures.WithLabelValues(r.Code).Inc()
	case batch.Skipped:
		d.log.Warn("lease lost before delete; the message will be redelivered", zap.String("message_id", msg.ID))
		d.metrics.DeleteFailures.WithLabelValues("lease_lost").Inc()
	case batch.Abandoned:
		d.log.Warn("shutdown deadline passed before this delete was confirmed; the message will be redelivered",
			zap.String("message_id", msg.ID), zap.Error(r.Err))
		d.metrics.DeleteFailures.WithLabelValues("abandoned").Inc()
	case batch.Superseded:
		// A redelivered message acknowledged twice: its newer handle is
		// deleted in the same call; this lease just ends.
	}
	d.leases.Remove(msg)
}
