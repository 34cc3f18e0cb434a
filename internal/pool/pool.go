// Package pool runs the handler over received messages on an alitto/pond
// pool: a task per free slot, which goes on with the messages waiting
// when it finishes one; each message with its own context, panics
// recovered and counted, and on FIFO queues one message of a group at a
// time, in receive order.
package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alitto/pond/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/downstream"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/startstop"
)

// Leases is what the pool needs from the lease table.
type Leases interface {
	Begin(msg *message.Message, cancel context.CancelCauseFunc) bool
	Alive(msg *message.Message) bool
	Remove(msg *message.Message)
	Handled(msg *message.Message)
	Retry(ctx context.Context, msg *message.Message, delay time.Duration)
	Release(ctx context.Context, msgs []*message.Message)
	ObserveDuration(d time.Duration)
}

// Acker queues the delete of a succeeded message.
type Acker interface {
	Delete(ctx context.Context, msg *message.Message) error
}

// Config configures a Pool.
type Config struct {
	// Concurrency is how many handlers run at once. Required.
	Concurrency int
	// FIFO keeps one message per MessageGroupId running, in receive order.
	FIFO bool
	// HandlerTimeout cancels a handler after this long; 0 means none.
	HandlerTimeout time.Duration
	// RetryBackoffMin and RetryBackoffMax bound a failed message's delay
	// before it is visible again; it doubles with each receive.
	RetryBackoffMin, RetryBackoffMax time.Duration
	// ChangeTimeout bounds the visibility changes that end a lease.
	// Defaults to DefaultChangeTimeout.
	ChangeTimeout time.Duration
	// MaxReceiveCount is the queue's redrive policy's (0: no DLQ). A
	// message that fails on its last receive is made visible at once, so
	// that SQS moves it to the DLQ without waiting out a retry delay.
	MaxReceiveCount int
	// HangGrace is how long a cancelled handler may take to return before
	// its message is settled without it. Defaults to DefaultHangGrace.
	HangGrace time.Duration
	// CancelGrace is how long a forced Stop waits for the handlers it
	// cancelled before it releases their messages without them. Defaults
	// to DefaultCancelGrace.
	CancelGrace time.Duration
	// Gate, when set, decides when each handler may start and whether a
	// message that failed for the downstream's reasons is held (and run
	// again once the downstream recovers) rather than handed back to SQS.
	Gate Gate
	// DeadLetter, when set, takes the messages a handler marked as never
	// able to succeed; they are deleted from the queue once it has them.
	DeadLetter DeadLetterer
}

// Gate is what the pool needs from the downstream guard.
type Gate interface {
	Acquire(ctx context.Context, stop <-chan struct{}) (*downstream.Permit, error)
}

// DeadLetterer sends a message to the queue's dead-letter queue.
type DeadLetterer interface {
	Send(ctx context.Context, msg *message.Message, reason string) error
}

// Defaults for Config.
const (
	DefaultChangeTimeout = 15 * time.Second
	DefaultHangGrace     = 5 * time.Second
	DefaultCancelGrace   = time.Second
)

var (
	errHandlerTimeout = errors.New("handler timeout")
	errPanic          = errors.New("handler panicked")
	errHung           = errors.New("handler ignored its cancellation")
)

// Pool dispatches messages to handlers.
type Pool struct {
	startstop.Lifecycle
	cfg     Config
	in      <-chan *message.Message
	cancel  context.CancelFunc // cancels every handler: a forced Stop
	handler handler.Handler
	// batch is handler as a batch handler, nil when it takes one message
	// a call; batchSize and batchWindow are its Batching.
	batch       handler.BatchHandler
	batchSize   int
	batchWindow time.Duration
	leases      Leases
	acker       Acker
	log         *zap.Logger
	metrics     *metrics.Metrics
	// succeeded is metrics.MessagesProcessed of outcome success, looked
	// up once rather than for every message.
	succeeded prometheus.Counter

	pond     pond.Pool
	slots    chan struct{}
	drain    chan struct{}
	drainOne sync.Once
	draining atomic.Bool

	mu     sync.Mutex
	groups map[string]*group // FIFO groups running, or failed recently

	// settleCtx is the handlers' parent context without its cancellation:
	// a forced stop does not cut short the calls that settle a message.
	settleCtx context.Context

	runMu   sync.Mutex
	running map[*handlerWatch]struct{} // handlers running now
}

// group is a FIFO group's state in this worker. While running, later
// messages wait in pending. After a failure, failedAt fences the group:
// messages of it received before then are released, not run, because SQS
// will hand the failed message back first.
type group struct {
	running  bool
	pending  []*message.Message
	failedAt time.Time
}

// New creates a Pool that runs h over the messages from in.
func New(cfg Config, h handler.Handler, leases Leases, acker Acker, in <-chan *message.Message, log *zap.Logger, m *metrics.Metrics) *Pool {
	if cfg.ChangeTimeout <= 0 {
		cfg.ChangeTimeout = DefaultChangeTimeout
	}
	if cfg.HangGrace <= 0 {
		cfg.HangGrace = DefaultHangGrace
	}
	if cfg.CancelGrace <= 0 {
		cfg.CancelGrace = DefaultCancelGrace
	}
	slots := Slots(cfg.Concurrency, h)
	p := &Pool{
		cfg: cfg, in: in, handler: h, leases: leases, acker: acker, log: log.Named("pool"), metrics: m,
		succeeded: m.MessagesProcessed.WithLabelValues(metrics.OutcomeSuccess),
		// Our own slots decide when a message is handed over, so pond's
		// queue (unbounded by default) never holds a message we could
		// not release at shutdown.
		pond:    pond.NewPool(slots, pond.WithQueueSize(slots)),
		slots:   make(chan struct{}, slots),
		drain:   make(chan struct{}),
		groups:  make(map[string]*group),
		running: make(map[*handlerWatch]struct{}),
	}
	if bh, ok := h.(handler.BatchHandler); ok {
		p.batch = bh
		p.batchSize, p.batchWindow = bh.Batching()
	}
	return p
}

// Start dispatches the messages from in to handlers until in is closed;
// then, once every handler has returned, the pool has stopped (Done). ctx
// is the parent of every handler's context: cancelling it is a forced
// stop, whose messages are released rather than retried.
func (p *Pool) Start(ctx context.Context) error {
	if err := p.BeginStart(); err != nil {
		return err
	}
	workCtx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.settleCtx = context.WithoutCancel(workCtx)
	context.AfterFunc(workCtx, p.armAll)
	go func() {
		defer p.Stopped()
		defer cancel()
		p.run(workCtx, p.in)
	}()
	return nil
}

// Stop starts no more handlers: buffered messages, and those that arrive
// until in is closed, are released at once, while running handlers go
// on. It returns once in is closed and every handler has returned, or,
// when ctx is done first, cancels the handlers, gives them CancelGrace to
// return, releases the messages of those that did not, and returns ctx's
// error. Stopping twice, or before Start, is harmless.
func (p *Pool) Stop(ctx context.Context) error {
	p.drainOne.Do(func() {
		p.draining.Store(true)
		close(p.drain)
	})
	if _, running := p.BeginStop(); !running {
		return nil
	}
	if p.Wait(ctx) == nil {
		return nil
	}
	p.cancel()
	grace := time.NewTimer(p.cfg.CancelGrace)
	defer grace.Stop()
	select {
	case <-p.Done():
	case <-grace.C:
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.CancelGrace)
		defer cancel()
		if n := p.abandonRunning(rctx); n > 0 {
			p.log.Error("handlers ignored their cancellation; released their messages, going on without them", zap.Int("handlers", n))
		}
	}
	return ctx.Err()
}

// run dispatches messages from in until in is closed, then waits for every
// handler to finish. workCtx cancels running handlers (forced shutdown);
// their messages are released rather than retried.
func (p *Pool) run(workCtx context.Context, in <-chan *message.Message) {
	defer p.pond.StopAndWait()
	for msg := range in {
		p.metrics.MessagesBuffered.Set(float64(len(in)))
		if p.draining.Load() {
			p.releaseRest(workCtx, msg, in)
			return
		}
		start, fenced := p.claimGroup(msg)
		if fenced {
			p.release(workCtx, []*message.Message{msg})
		}
		if !start {
			continue // queued behind its group's running message, or fenced
		}
		select {
		case p.slots <- struct{}{}:
			if p.batch != nil {
				p.goBatch(workCtx, p.gather(workCtx, msg, in))
				continue
			}
			// Go, not Submit: no future to allocate per message.
			if err := p.pond.Go(func() {
				defer func() { <-p.slots }()
				for ok := true; ok; msg, ok = p.next() {
					p.runChain(workCtx, msg)
				}
			}); err != nil {
				<-p.slots // cannot happen while Run owns the pool; never drop a message
				p.release(workCtx, []*message.Message{msg})
			}
		case <-p.drain:
			p.releaseRest(workCtx, msg, in)
			return
		}
	}
}

// next hands a handler that finished its message the next one waiting in
// in, without waiting: it goes on with it on its own slot, rather than
// give the slot back for run to hand out again, which at saturation cost a
// wake-up of run and a goroutine per message. Not on FIFO queues, whose
// messages must be claimed for their group in the order they arrive, by
// run alone; nor once the pool drains, when run releases what is left.
func (p *Pool) next() (*message.Message, bool) {
	if p.cfg.FIFO || p.draining.Load() {
		return nil, false
	}
	select {
	case msg, ok := <-p.in:
		if ok {
			p.metrics.MessagesBuffered.Set(float64(len(p.in)))
		}
		return msg, ok
	default:
		return nil, false
	}
}

// releaseRest releases first, the FIFO messages waiting behind their group,
// and everything still to come from in, in batches as it arrives.
func (p *Pool) releaseRest(ctx context.Context, first *message.Message, in <-chan *message.Message) {
	batch := []*message.Message{first}
	p.mu.Lock()
	for _, g := range p.groups {
		batch = append(batch, g.pending...)
		g.pending = nil
	}
	p.mu.Unlock()
	rctx := context.WithoutCancel(ctx)
	for {
		// Take what is buffered now without waiting, release it, then wait.
	more:
		for len(batch) < 100 {
			select {
			case m, ok := <-in:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		p.release(rctx, batch)
		batch = batch[:0]
		m, ok := <-in
		if !ok {
			p.metrics.MessagesBuffered.Set(0)
			return
		}
		batch = append(batch, m)
	}
}

func (p *Pool) release(ctx context.Context, msgs []*message.Message) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ChangeTimeout)
	defer cancel()
	p.leases.Release(ctx, msgs)
	p.metrics.MessagesProcessed.WithLabelValues(metrics.OutcomeReleased).Add(float64(len(msgs)))
}
