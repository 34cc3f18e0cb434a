// Package replay runs the handler over a dead-letter queue until it is
// empty, with the pool run uses: what succeeds is deleted, and the first
// failure stops the run, its message made visible again at once, not
// deleted, not retried.
package replay

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/pool"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
)

// DefaultConcurrency is Config.Concurrency's default: one handler at a
// time, so that the first failure is the last message handled.
const DefaultConcurrency = 1

// Config configures a replay.
type Config struct {
	receive.Config
	// Concurrency is how many handlers run at once; with a batch handler,
	// how many calls, each of a batch. With more than one,
	// the handlers running when the first fails finish: what succeeds is
	// deleted, what fails is released too. Defaults to DefaultConcurrency.
	Concurrency int
	// HandlerTimeout cancels a handler after this long; 0 means none.
	HandlerTimeout time.Duration
	// StopTimeout bounds how long handlers still running may take once
	// the run stops. Defaults to config.DefaultShutdownTimeout.
	StopTimeout time.Duration
}

// Validate checks the fields, naming the one that is wrong.
func (c *Config) Validate() error {
	switch {
	case c.Concurrency < 0 || c.Concurrency > 10000:
		return &config.FieldError{Field: "Concurrency", Msg: fmt.Sprintf("is %d: it must be between 1 and 10000", c.Concurrency)}
	case c.HandlerTimeout < 0:
		return &config.FieldError{Field: "HandlerTimeout", Msg: fmt.Sprintf("is %s: it must be 0 (none) or more", c.HandlerTimeout)}
	}
	return c.Config.Validate()
}

// Failure is the first message the handler failed on.
type Failure struct {
	MessageID string
	Err       error
}

func (f *Failure) Error() string { return fmt.Sprintf("message %s failed: %v", f.MessageID, f.Err) }
func (f *Failure) Unwrap() error { return f.Err }

// Report is what a replay did.
type Report struct {
	// Succeeded is the messages the handler succeeded on.
	Succeeded int
	// Deleted is the deletes SQS confirmed.
	Deleted int
	// Failed is the messages the handler failed on: the first, and any
	// that were running beside it. They are all in the queue, visible.
	Failed int
	// End is why reading ended; Left is the queue's counts then, when it
	// ended Empty.
	End  receive.End
	Left sqsapi.Counts
}

const closeTimeout = 2 * time.Minute

// Run handles every message of the queue with h until the queue is
// empty. It returns a *Failure for the first message the handler failed
// on, or another error when the queue cannot be read or ctx was
// cancelled (handlers running then finish, within StopTimeout).
func Run(ctx context.Context, cfg Config, api receive.API, h handler.Handler, log *zap.Logger) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = config.DefaultShutdownTimeout
	}
	r, err := receive.New(cfg.Config, api, log, nil)
	if err != nil {
		return Report{}, err
	}
	f := &firstFailure{h: h, stop: make(chan struct{})}
	var ph handler.Handler = handler.Func(f.handle)
	concurrency := cfg.Concurrency
	if b, ok := h.(handler.BatchHandler); ok {
		// Concurrency calls at once, each of a batch.
		ph = batchFirstFailure{firstFailure: f, batch: b}
		size, _ := b.Batching()
		concurrency *= size
	}
	p := pool.New(pool.Config{Concurrency: concurrency, FIFO: cfg.FIFO, HandlerTimeout: cfg.HandlerTimeout},
		ph, r.Leases(), r.Deleter(), r.Messages(), log, r.Metrics())
	if err := r.Start(ctx); err != nil {
		return Report{}, err
	}
	bg := context.WithoutCancel(ctx)
	if err := p.Start(bg); err != nil {
		_ = r.Close(bg)
		return Report{}, err
	}
	select {
	case <-f.stop:
	case <-p.Done(): // receiving ended and every handler returned
	case <-ctx.Done():
	}
	// Receives stop first; the pool releases what is buffered and lets
	// the handlers running finish; then the last deletes are flushed.
	go func() { _ = r.StopReceiving(bg) }()
	pctx, cancel := context.WithTimeout(bg, cfg.StopTimeout)
	defer cancel()
	_ = p.Stop(pctx)
	cctx, cancelClose := context.WithTimeout(bg, closeTimeout)
	defer cancelClose()
	if cerr := r.Close(cctx); cerr != nil {
		log.Warn("the end of the replay was cut short; messages not released stay invisible until their visibility timeout", zap.Error(cerr))
	}

	m := r.Metrics()
	report := Report{
		Succeeded: int(metrics.Sum(m.MessagesProcessed.WithLabelValues(metrics.OutcomeSuccess))),
		Deleted:   r.Deleted(),
		Failed:    f.count(),
	}
	report.End, report.Left = r.End()
	switch {
	case f.first() != nil:
		return report, f.first()
	case report.End == receive.Failed:
		return report, r.Err()
	case ctx.Err() != nil:
		return report, ctx.Err()
	}
	return report, nil
}

// firstFailure wraps the handler: a failure is not retried but released
// at once (a zero retry delay), and the first one stops the run.
type firstFailure struct {
	h    handler.Handler
	stop chan struct{}

	mu     sync.Mutex
	failed *Failure
	n      int
}

func (f *firstFailure) handle(ctx context.Context, msg *message.Message) error {
	return f.failedOn(msg, f.h.Handle(ctx, msg))
}

// failedOn is the result of msg for the pool: nil when err is, else err
// released at once, the first such one stopping the run.
func (f *firstFailure) failedOn(msg *message.Message, err error) error {
	if err == nil {
		return nil
	}
	f.mu.Lock()
	f.n++
	if f.failed == nil {
		f.failed = &Failure{MessageID: msg.ID, Err: err}
		close(f.stop)
	}
	f.mu.Unlock()
	return &handler.RetryAfterError{After: 0, Err: err}
}

// batchFirstFailure is firstFailure around a batch handler: the pool
// hands it batches, and each message's failure counts as one.
type batchFirstFailure struct {
	*firstFailure
	batch handler.BatchHandler
}

func (f batchFirstFailure) Handle(ctx context.Context, msg *message.Message) error {
	return f.handle(ctx, msg)
}

func (f batchFirstFailure) HandleBatch(ctx context.Context, msgs []*message.Message) []error {
	errs := f.batch.HandleBatch(ctx, msgs)
	for i, err := range errs {
		if i < len(msgs) {
			errs[i] = f.failedOn(msgs[i], err)
		}
	}
	return errs
}

func (f batchFirstFailure) Batching() (size int, window time.Duration) { return f.batch.Batching() }

func (f *firstFailure) first() *Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *firstFailure) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}
