// Package receive reads a queue to its end for the tools, with the
// pipeline's own parts: fetch.Fetcher long-polls (taking room before it
// asks, registering every lease before handing a message on), the lease
// table keeps every message held invisible with its heartbeats, and the
// batch deleter deletes. It also decides when the queue is empty.
package receive

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/ack"
	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/fetch"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/startstop"
	"github.com/sqsworker/sqsworker/internal/visibility"
)

// API is what reading a queue takes from SQS.
type API interface {
	fetch.API
	ack.API
	visibility.API
	sqsapi.QueueAPI // the queue's counts
}

// Defaults for Config.
const (
	// DefaultWaitTime is a tool's long-poll wait: short, since the queue
	// is only known to be empty once a whole poll came back with nothing.
	DefaultWaitTime = 2 * time.Second
	// DefaultVisibilityTimeout is the lease asked for on receive: how long
	// a message stays invisible if the tool dies holding it.
	DefaultVisibilityTimeout = 30 * time.Second
	// DefaultInFlight is how many messages may be received and not yet
	// written, sent or handled: the bound on the tool's memory.
	DefaultInFlight = 200
)

// Config configures a Receiver.
type Config struct {
	// QueueURL is the queue to read. Required.
	QueueURL string
	// FIFO says the queue is a FIFO queue: a group's later messages are
	// not handed out while this run holds an earlier one.
	FIFO bool
	// WaitTime is each long poll's wait, 1s to 20s. Defaults to
	// DefaultWaitTime.
	WaitTime time.Duration
	// VisibilityTimeout is the lease asked for on receive, in whole
	// seconds, 1s to 12h; heartbeats extend it while a message is held.
	// Defaults to DefaultVisibilityTimeout.
	VisibilityTimeout time.Duration
	// MaxMessages, when positive, ends receiving after this many.
	// Defaults to 0: until the queue is empty.
	MaxMessages int
	// InFlight bounds the messages received and not yet deleted, held or
	// settled. Defaults to DefaultInFlight.
	InFlight int
}

func (c *Config) defaults() {
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if c.InFlight <= 0 {
		c.InFlight = DefaultInFlight
	}
}

// Validate checks the settings, naming the field that is wrong (the
// queue is checked by New). Zero fields take their defaults.
func (c Config) Validate() error {
	c.defaults()
	switch {
	case c.WaitTime < time.Second || c.WaitTime > 20*time.Second || c.WaitTime%time.Second != 0:
		return &config.FieldError{Field: "WaitTime", Msg: fmt.Sprintf("is %s: it must be whole seconds from 1s to 20s (a long poll; the queue is empty only once one came back with nothing)", c.WaitTime)}
	case c.VisibilityTimeout < time.Second || c.VisibilityTimeout > sqsapi.MaxVisibility || c.VisibilityTimeout%time.Second != 0:
		return &config.FieldError{Field: "VisibilityTimeout", Msg: fmt.Sprintf("is %s: it must be whole seconds from 1s to 12h", c.VisibilityTimeout)}
	case c.MaxMessages < 0:
		return &config.FieldError{Field: "MaxMessages", Msg: fmt.Sprintf("is %d: it must be 0 (no limit) or more", c.MaxMessages)}
	}
	return nil
}

// End is why receiving ended.
type End int

const (
	// Receiving has not ended.
	Receiving End = iota
	// Empty: long polls came back with nothing and the queue's counts say
	// nothing is visible or delayed, and nothing is in flight but what
	// this run holds.
	Empty
	// Blocked: as Empty, but messages are still visible, on a FIFO queue
	// while this run holds messages: they wait behind held messages of
	// their group, which SQS does not hand out until those are gone.
	Blocked
	// Limit: MaxMessages were received.
	Limit
	// Stopped: StopReceiving was called first.
	Stopped
	// Failed: the queue cannot be received from (Err says why).
	Failed
)

// Receiver reads one queue. Start it, range over Messages, settle each
// message (Delete, Hold, or through the pool with Leases and Deleter),
// then Close. Its methods are safe for concurrent use.
type Receiver struct {
	startstop.Lifecycle
	cfg     Config
	api     API
	log     *zap.Logger
	metrics *metrics.Metrics
	leases  *visibility.Table
	deleter *ack.Deleter
	fetcher *fetch.Fetcher
	msgs    chan *message.Message

	stopOnce  sync.Once
	stopWatch chan struct{} // closed by StopReceiving
	watchDone chan struct{} // closed once the watch has stopped the fetcher

	mu     sync.Mutex
	end    End
	left   sqsapi.Counts // the counts that ended it (Empty, Blocked)
	held   []*message.Message
	unheld []*message.Message // settled neither way: released at Close
}

// New creates a Receiver. m may be nil.
func New(cfg Config, api API, log *zap.Logger, m *metrics.Metrics) (*Receiver, error) {
	if cfg.QueueURL == "" {
		return nil, &config.FieldError{Field: "QueueURL", Msg: "is required: the queue to read"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if m == nil {
		m = metrics.New()
	}
	r := &Receiver{cfg: cfg, api: api, log: log.Named("receive"), metrics: m,
		msgs:      make(chan *message.Message, cfg.InFlight),
		stopWatch: make(chan struct{}), watchDone: make(chan struct{})}
	r.leases = visibility.New(visibility.Config{
		QueueURL: cfg.QueueURL, InFlightLimit: cfg.InFlight, VisibilityTimeout: cfg.VisibilityTimeout,
	}, api, log, m)
	r.deleter = ack.New(ack.Config{QueueURL: cfg.QueueURL}, api, r.leases, log, m)
	r.fetcher = fetch.New(fetch.Config{
		QueueURL: cfg.QueueURL, MaxFetchers: max(1, cfg.InFlight/sqsapi.MaxBatchEntries), MaxMessages: cfg.MaxMessages,
		WaitTime: cfg.WaitTime, VisibilityTimeout: cfg.VisibilityTimeout,
	}, api, r.leases, metrics.NewHealth(time.Minute), r.msgs, log, m)
	return r, nil
}

// Start starts the heartbeats, the deleter and the long polls.
func (r *Receiver) Start(ctx context.Context) error {
	if err := r.BeginStart(); err != nil {
		return err
	}
	for _, start := range []func(context.Context) error{r.leases.Start, r.deleter.Start, r.fetcher.Start} {
		if err := start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
	}
	go r.watch()
	return nil
}

// Messages is every message received, each with its lease registered.
// It is closed once receiving has ended (End says why) and the polls
// under way have returned.
func (r *Receiver) Messages() <-chan *message.Message { return r.msgs }

// Next returns the next message, nil once Messages is closed. When none
// is waiting it first calls idle, which sends or syncs what the caller
// has batched, then waits; it returns idle's error, or ctx's when ctx is
// done first.
func (r *Receiver) Next(ctx context.Context, idle func() error) (*message.Message, error) {
	select {
	case msg := <-r.msgs:
		return msg, nil
	default:
	}
	if err := idle(); err != nil {
		return nil, err
	}
	select {
	case msg := <-r.msgs:
		return msg, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Leases is the lease table, for a pool that settles messages itself.
func (r *Receiver) Leases() *visibility.Table { return r.leases }

// Deleter is the batch deleter, for a pool that settles messages itself.
func (r *Receiver) Deleter() *ack.Deleter { return r.deleter }

// Metrics is the collectors the parts count on.
func (r *Receiver) Metrics() *metrics.Metrics { return r.metrics }

// Delete queues msg's delete: its line is on disk, or its copy was sent.
// Its room goes back to the polls at once.
func (r *Receiver) Delete(ctx context.Context, msg *message.Message) {
	shed(msg)
	// Not ctx: a message whose line is written is deleted even when the
	// run is being interrupted. Delete blocks only while deletes back up.
	if err := r.deleter.Delete(context.WithoutCancel(ctx), msg); err != nil {
		r.mu.Lock()
		r.unheld = append(r.unheld, msg)
		r.mu.Unlock()
		return
	}
	r.leases.Handled(msg)
}

// Hold keeps msg invisible until Close, which makes it visible again: a
// message the run leaves in the queue, which it must not receive again.
// Its room goes back to the polls at once.
func (r *Receiver) Hold(msg *message.Message) {
	shed(msg)
	r.leases.Handled(msg)
	r.mu.Lock()
	r.held = append(r.held, msg)
	r.mu.Unlock()
}

// shed drops what a held or deleted message no longer needs: the lease
// keeps only its id and receipt handle, so that memory stays bounded by
// the in-flight room rather than by what was held. Only the lease table
// and the deleter read msg from here on, and neither reads these fields.
func shed(msg *message.Message) {
	msg.Body, msg.Attributes, msg.SystemAttributes = "", nil, nil
}

// Held is how many messages Hold holds.
func (r *Receiver) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// End is why receiving ended, Receiving while it goes on, and the
// queue's counts when it ended Empty or Blocked.
func (r *Receiver) End() (End, sqsapi.Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.end, r.left
}

// Err is why the queue could not be received from, once End is Failed.
func (r *Receiver) Err() error { return r.fetcher.Err() }

// Deleted is how many deletes SQS confirmed.
func (r *Receiver) Deleted() int { return int(metrics.Sum(r.metrics.MessagesDeleted)) }

func (r *Receiver) ended(e End, left sqsapi.Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.end == Receiving {
		r.end, r.left = e, left
	}
}

// StopReceiving starts no new receive; the polls under way return within
// the wait time (what they bring is released) and Messages is closed. It
// returns once they have, or when ctx is done.
func (r *Receiver) StopReceiving(ctx context.Context) error {
	r.stopOnce.Do(func() { close(r.stopWatch) })
	if !r.Running() {
		return nil
	}
	select {
	case <-r.watchDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends the run: it stops receiving, releases the messages still
// buffered and those held (visibility 0, in batches), flushes the last
// deletes and stops the heartbeats. Call it once nothing reads Messages
// any more. Closing twice, or before Start, is harmless.
func (r *Receiver) Close(ctx context.Context) error {
	first, running := r.BeginStop()
	if !running {
		return nil
	}
	if !first {
		return r.Wait(ctx)
	}
	err := r.StopReceiving(ctx)
	var rest []*message.Message
	for msg := range r.msgs {
		rest = append(rest, msg)
	}
	err = errors.Join(err, r.deleter.Stop(ctx))
	r.mu.Lock()
	rest = append(append(rest, r.unheld...), r.held...)
	r.held, r.unheld = nil, nil
	r.mu.Unlock()
	r.leases.Release(ctx, rest)
	err = errors.Join(err, r.leases.Stop(ctx))
	r.Stopped()
	return err
}
