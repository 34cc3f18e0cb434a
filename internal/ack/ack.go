// Package ack owns the batch deleter: it coalesces the acknowledgements of
// succeeded messages into DeleteMessageBatch calls of up to ten, several in
// flight at once, and keeps each lease registered until SQS confirms its
// delete.
package ack

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
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
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

// Defaults for Config.
const (
	DefaultFlushInterval      = 10 * time.Millisecond
	DefaultMaxInFlightBatches = 8
	DefaultMaxPending         = 1000
	DefaultRequestTimeout     = 10 * time.Second
)

// Config configures a Deleter.
type Config struct {
	QueueURL string
	// FlushInterval is how long an acknowledgement waits for nine others.
	// Defaults to 10ms.
	FlushInterval time.Duration
	// MaxInFlightBatches bounds concurrent DeleteMessageBatch calls.
	// Defaults to 8.
	MaxInFlightBatches int
	// MaxPending is the backlog (queued and in flight) at which Delete
	// blocks, until the backlog falls below half of it. Defaults to 1000.
	MaxPending int
	// RequestTimeout bounds one call. Defaults to 10s.
	RequestTimeout time.Duration
}

// Deleter is the batch deleter. Start it, Delete from any goroutine, Stop
// once no more Deletes will come.
type Deleter struct {
	cfg     Config
	api     API
	leases  Leases
	log     *zap.Logger
	metrics *metrics.Metrics

	in       chan *message.Message
	done     chan struct{}
	startOne sync.Once
	stopOne  sync.Once
	ctx      context.Context // for the calls; cancelled only by Stop's deadline
	cancel   context.CancelFunc

	mu      sync.Mutex
	pending int
	gate    chan struct{} // non-nil while Delete blocks; closed to let it go
}

// New creates a Deleter.
func New(cfg Config, api API, leases Leases, log *zap.Logger, m *metrics.Metrics) *Deleter {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.MaxInFlightBatches <= 0 {
		cfg.MaxInFlightBatches = DefaultMaxInFlightBatches
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Deleter{
		cfg: cfg, api: api, leases: leases, log: log.Named("ack"), metrics: m,
		in:   make(chan *message.Message, cfg.MaxPending),
		done: make(chan struct{}),
		ctx:  ctx, cancel: cancel,
	}
}

// Start launches the batching loop.
func (d *Deleter) Start() {
	d.startOne.Do(func() { go d.loop() })
}

// Delete queues msg's delete. It blocks while the backlog is high, or
// until ctx is done (then the message is not deleted and its lease is
// left as it is, and Delete returns ctx's error).
func (d *Deleter) Delete(ctx context.Context, msg *message.Message) error {
	for {
		d.mu.Lock()
		if d.gate == nil {
			d.pending++
			if d.pending >= d.cfg.MaxPending {
				d.gate = make(chan struct{})
			}
			d.mu.Unlock()
			d.in <- msg // never blocks: in holds MaxPending
			return nil
		}
		gate := d.gate
		d.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (d *Deleter) settled(n int) {
	d.mu.Lock()
	d.pending -= n
	if d.gate != nil && d.pending < max(d.cfg.MaxPending/2, 1) {
		close(d.gate)
		d.gate = nil
	}
	d.mu.Unlock()
}

// Stop flushes everything queued and waits for every batch to settle, or
// for ctx to be done, after which unconfirmed deletes are abandoned (their
// messages come back: never lost, possibly handled twice). No Delete may be
// called after Stop. Stopping twice, or before Start, is harmless.
func (d *Deleter) Stop(ctx context.Context) error {
	d.stopOne.Do(func() {
		d.Start()
		close(d.in)
	})
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		d.cancel()
		<-d.done
		return ctx.Err()
	}
}

func (d *Deleter) loop() {
	defer close(d.done)
	defer d.cancel()
	// Long-lived senders, not a goroutine per batch: each would grow its
	// stack anew through the SDK's deep middleware (5.6% of P1's CPU).
	batches := make(chan []*message.Message)
	var wg sync.WaitGroup
	for range d.cfg.MaxInFlightBatches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				d.send(b)
			}
		}()
	}
	defer wg.Wait()
	defer close(batches)

	batch := make([]*message.Message, 0, 10)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		timer.Stop()
		batches <- batch // waits while every sender is busy
		batch = make([]*message.Message, 0, 10)
	}
	add := func(msg *message.Message) {
		for i, m := range batch {
			if m.ID == msg.ID {
				// A redelivered message acknowledged twice: keep the newest
				// handle, one entry (SQS rejects a batch with the same
				// message twice).
				batch[i] = msg
				d.leases.Remove(m)
				d.settled(1)
				return
			}
		}
		batch = append(batch, msg)
		if len(batch) == 1 {
			timer.Reset(d.cfg.FlushInterval)
		}
		if len(batch) == 10 {
			flush()
		}
	}
	for {
		select {
		case msg, ok := <-d.in:
			if !ok {
				flush()
				return
			}
			add(msg)
		case <-timer.C:
			flush()
		}
	}
}

// send deletes one batch, retrying what may still succeed while the leases
// live, and settles every entry exactly once.
func (d *Deleter) send(batch []*message.Message) {
	delay := 50 * time.Millisecond
	for attempt := 1; len(batch) > 0; attempt++ {
		live := batch[:0:0]
		for _, msg := range batch {
			if d.leases.Alive(msg) {
				live = append(live, msg)
				continue
			}
			// Never delete with a stale handle: the message may be
			// someone else's now.
			d.log.Warn("lease lost before delete; the message will be redelivered",
				zap.String("message_id", msg.ID))
			d.metrics.DeleteFailures.WithLabelValues("lease_lost").Inc()
			d.leases.Remove(msg)
			d.settled(1)
		}
		batch = live
		if len(batch) == 0 || d.ctx.Err() != nil {
			d.abandon(batch)
			return
		}
		retry, err := d.deleteOnce(batch)
		if len(retry) == 0 {
			return
		}
		batch = retry
		d.log.Info("delete incomplete; will retry",
			zap.Int("messages", len(batch)), zap.Int("attempt", attempt),
			zap.Duration("retry_in", delay), zap.Error(err))
		if !backoff.Sleep(d.ctx, backoff.Jitter(delay)) {
			d.abandon(batch)
			return
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (d *Deleter) abandon(batch []*message.Message) {
	if len(batch) == 0 {
		return
	}
	d.log.Warn("shutdown deadline passed before these deletes were confirmed; the messages will be redelivered",
		zap.Int("messages", len(batch)))
	d.metrics.DeleteFailures.WithLabelValues("abandoned").Add(float64(len(batch)))
	for _, msg := range batch {
		d.leases.Remove(msg)
	}
	d.settled(len(batch))
}

// deleteOnce sends one DeleteMessageBatch and returns the entries to send
// again (all of them when the call itself failed).
func (d *Deleter) deleteOnce(batch []*message.Message) ([]*message.Message, error) {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, msg := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{
			Id:            aws.String(strconv.Itoa(i)),
			ReceiptHandle: aws.String(msg.ReceiptHandle),
		}
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.RequestTimeout)
	out, err := d.api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{
		QueueUrl: aws.String(d.cfg.QueueURL), Entries: entries,
	})
	cancel()
	d.metrics.DeleteBatchSize.Observe(float64(len(batch)))
	if err != nil {
		return batch, err
	}
	seen := make([]bool, len(batch))
	for _, s := range out.Successful {
		i, ok := index(s.Id, len(batch))
		if !ok || seen[i] {
			continue
		}
		seen[i] = true
		d.leases.Remove(batch[i])
		d.metrics.MessagesDeleted.Inc()
		d.settled(1)
	}
	var retry []*message.Message
	for _, f := range out.Failed {
		i, ok := index(f.Id, len(batch))
		if !ok || seen[i] {
			continue
		}
		seen[i] = true
		if sqsapi.IsEntryTransient(f) {
			retry = append(retry, batch[i])
			continue
		}
		d.log.Warn("delete entry failed; the message will be redelivered",
			zap.String("message_id", batch[i].ID), zap.String("error_code", sqsapi.EntryError(f)))
		d.metrics.DeleteFailures.WithLabelValues(sqsapi.EntryCode(f)).Inc()
		d.leases.Remove(batch[i])
		d.settled(1)
	}
	// An entry SQS did not mention at all is retried: dropping it would
	// leave a handled message to be redelivered.
	for i := range batch {
		if !seen[i] {
			retry = append(retry, batch[i])
		}
	}
	return retry, nil
}

func index(id *string, n int) (int, bool) {
	i, err := strconv.Atoi(aws.ToString(id))
	return i, err == nil && i >= 0 && i < n
}
