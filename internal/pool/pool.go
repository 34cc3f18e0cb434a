// Package pool runs the handler over received messages on an alitto/pond
// pool: one task per message, each with its own context, panics recovered
// and counted, and on FIFO queues one message of a group at a time, in
// receive order.
package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alitto/pond/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/downstream"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
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
	leases  Leases
	acker   Acker
	log     *zap.Logger
	metrics *metrics.Metrics
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
	return &Pool{
		cfg: cfg, in: in, handler: h, leases: leases, acker: acker, log: log.Named("pool"), metrics: m,
		succeeded: m.MessagesProcessed.WithLabelValues(metrics.OutcomeSuccess),
		// Our own slots decide when a message is handed over, so pond's
		// queue (unbounded by default) never holds a message we could
		// not release at shutdown.
		pond:    pond.NewPool(cfg.Concurrency, pond.WithQueueSize(cfg.Concurrency)),
		slots:   make(chan struct{}, cfg.Concurrency),
		drain:   make(chan struct{}),
		groups:  make(map[string]*group),
		running: make(map[*handlerWatch]struct{}),
	}
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
			// Go, not Submit: no future to allocate per message.
			if err := p.pond.Go(func() {
				defer func() { <-p.slots }()
				p.runChain(workCtx, msg)
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

// process runs the handler on one message and settles it; it reports
// whether the handler succeeded. A failure the downstream is to blame for
// does not go back to SQS while the downstream is failing (each receive
// counts toward the dead-letter queue): the message is held, its lease
// kept alive, and run again when the gate lets it; one such failure while
// the downstream is healthy is retried here a few times before it is.
func (p *Pool) process(workCtx context.Context, msg *message.Message) bool {
	if p.draining.Load() {
		p.release(context.WithoutCancel(workCtx), []*message.Message{msg})
		return false
	}
	ctx, cancel := context.WithCancelCause(workCtx)
	defer cancel(nil)
	if !p.leases.Begin(msg, cancel) {
		p.lost(msg, "lease lost while the message waited for a handler")
		return false
	}
	for retries := 0; ; retries++ {
		permit, err := p.acquire(ctx)
		if err != nil {
			p.notStarted(workCtx, msg)
			return false
		}
		took, returned, err := p.attempt(workCtx, ctx, msg)
		kind := p.classify(workCtx, ctx, err)
		hold := false
		if permit != nil {
			hold = permit.Done(kind)
		}
		if !returned {
			// It ignored its cancellation and its message was settled
			// without it; until now its slot stayed busy, so concurrency
			// still bounded what ran.
			p.metrics.HandlersHung.Dec()
			return false
		}
		if kind.Downstream() && p.leases.Alive(msg) {
			if hold {
				if ce := p.log.Check(zap.DebugLevel, "downstream failing; holding the message"); ce != nil {
					ce.Write(zap.String("message_id", msg.ID), zap.Error(err))
				}
				continue
			}
			if d, ok := p.localRetry(retries, err); ok {
				if !p.sleep(ctx, d) {
					p.notStarted(workCtx, msg)
					return false
				}
				continue
			}
		}
		p.leases.ObserveDuration(took)
		return p.settle(workCtx, ctx, msg, err)
	}
}

// Local retries of a message whose call failed for the downstream's
// reasons while the breaker still holds the downstream as healthy.
const (
	localRetries      = 3
	localRetryBackoff = 100 * time.Millisecond
	maxLocalRetryWait = 5 * time.Second
)

// localRetry says whether to run the message again here, and after how
// long: a delay the downstream asked for, else a short doubling backoff.
func (p *Pool) localRetry(retries int, err error) (time.Duration, bool) {
	if p.cfg.Gate == nil || retries >= localRetries {
		return 0, false
	}
	d, asked := handler.RetryAfter(err)
	if !asked {
		d = backoff.Jitter(localRetryBackoff << retries)
	}
	return d, d <= maxLocalRetryWait
}

func (p *Pool) acquire(ctx context.Context) (*downstream.Permit, error) {
	if p.cfg.Gate == nil {
		return nil, nil
	}
	return p.cfg.Gate.Acquire(ctx, p.drain)
}

// sleep waits d, or returns false when the pool drains or ctx ends first.
func (p *Pool) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.drain:
	case <-ctx.Done():
	}
	return false
}

// notStarted settles a message the gate or a local retry held when the
// wait was cut short: released on a stop (it counts as released, not
// failed), lost when its lease was lost (it exceeded the maximum
// processing time while held, or its receipt handle went stale).
func (p *Pool) notStarted(workCtx context.Context, msg *message.Message) {
	if !p.leases.Alive(msg) {
		p.lost(msg, "lease lost while the message was held for the downstream")
		return
	}
	p.release(context.WithoutCancel(workCtx), []*message.Message{msg})
}

// attempt runs the handler once under msg's context, with the handler
// timeout. returned is false when the handler ignored its cancellation and
// its watch settled the message without it.
func (p *Pool) attempt(workCtx, msgCtx context.Context, msg *message.Message) (took time.Duration, returned bool, err error) {
	ctx := msgCtx
	if p.cfg.HandlerTimeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, p.cfg.HandlerTimeout, errHandlerTimeout)
		defer cancelTimeout()
	}
	p.metrics.HandlersRunning.Inc()
	start := time.Now()
	w := p.watch(workCtx, ctx, msg)
	err = p.call(ctx, msg)
	took = time.Since(start)
	p.metrics.HandlersRunning.Dec()
	p.metrics.HandlerDuration.Observe(took.Seconds())
	if err != nil && errors.Is(context.Cause(ctx), errHandlerTimeout) {
		err = fmt.Errorf("%w: %w", errHandlerTimeout, err)
	}
	return took, p.returned(w), err
}

// classify is what a call says about the downstream: nothing when the
// worker cancelled it itself. A handler that overran --handler-timeout
// failed on its message; a handler's own timeouts (the http handler's)
// say the downstream did not answer.
func (p *Pool) classify(workCtx, ctx context.Context, err error) downstream.Kind {
	switch {
	case err == nil:
		return downstream.Succeeded
	case workCtx.Err() != nil || ctx.Err() != nil:
		return downstream.Ignored
	case errors.Is(err, errHandlerTimeout):
		return downstream.MessageFailed
	}
	return downstream.Classify(err)
}

// settle ends msg's lease by its handler's result: delete on success,
// retry after a delay on failure, release on a forced shutdown, nothing
// (but counting) when the lease was lost. It reports success.
func (p *Pool) settle(workCtx, ctx context.Context, msg *message.Message, err error) bool {
	bg := context.WithoutCancel(workCtx)
	switch {
	case err == nil && p.leases.Alive(msg):
		if derr := p.acker.Delete(bg, msg); derr != nil {
			p.lost(msg, "delete could not be queued")
			return false
		}
		p.leases.Handled(msg)
		p.succeeded.Inc()
		return true
	case err == nil || !p.leases.Alive(msg):
		p.lost(msg, "lease lost while the handler ran; not deleting with a stale receipt handle")
		return false
	case workCtx.Err() != nil:
		// Forced shutdown: hand the message back now rather than leave it
		// invisible until a retry delay passes.
		p.release(bg, []*message.Message{msg})
		return false
	}

	if reason, ok := handler.DeadLetterReason(err); ok && p.deadLetter(bg, msg, reason) {
		return false
	}

	outcome := metrics.OutcomeFailure
	switch {
	case errors.Is(err, errPanic):
		outcome = metrics.OutcomePanic
	case errors.Is(err, errHandlerTimeout):
		outcome = metrics.OutcomeTimeout
	}
	delay, asked := handler.RetryAfter(err)
	if !asked {
		delay = backoff.Exponential(msg.ReceiveCount, p.cfg.RetryBackoffMin, p.cfg.RetryBackoffMax)
	}
	delay = min(delay, sqsapi.MaxVisibility-time.Since(msg.FirstReceivedAt))
	last := p.cfg.MaxReceiveCount > 0 && msg.ReceiveCount >= p.cfg.MaxReceiveCount
	if last {
		delay = 0
	}
	p.metrics.MessagesProcessed.WithLabelValues(outcome).Inc()
	fields := []zap.Field{zap.String("message_id", msg.ID), zap.Int("receive_count", msg.ReceiveCount),
		zap.String("outcome", outcome), zap.Duration("retry_in", delay.Round(time.Millisecond)), zap.Error(err)}
	switch {
	case last:
		p.log.Warn("handler failed on the message's last receive; releasing it now so SQS moves it to the dead-letter queue", fields...)
	case outcome == metrics.OutcomePanic:
		p.log.Error("handler panicked; will retry the message", fields...)
	default:
		p.log.Info("handler failed; will retry the message", fields...)
	}
	rctx, cancelRetry := context.WithTimeout(bg, p.cfg.ChangeTimeout)
	defer cancelRetry()
	p.leases.Retry(rctx, msg, max(delay, 0))
	return false
}

// deadLetter sends msg to the dead-letter queue, then deletes it from the
// queue; it reports whether it did. Without a dead-letter queue, or when
// the send fails, the message is retried as any failure is.
func (p *Pool) deadLetter(ctx context.Context, msg *message.Message, reason string) bool {
	// The reason, not the error: a handler's error may quote the message.
	fields := []zap.Field{zap.String("message_id", msg.ID), zap.String("reason", reason)}
	if p.cfg.DeadLetter == nil {
		p.log.Warn("handler asked to dead-letter the message, but the queue has no dead-letter queue; retrying it instead", fields...)
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, p.cfg.ChangeTimeout)
	defer cancel()
	if serr := p.cfg.DeadLetter.Send(sctx, msg, reason); serr != nil {
		p.log.Warn("could not send the message to the dead-letter queue; retrying it instead", append(fields, zap.NamedError("send_error", serr))...)
		return false
	}
	// Sent: from here the copy is the message. Delete the original; if
	// its lease is gone already SQS hands it out again and it is sent
	// once more, never lost.
	if !p.leases.Alive(msg) || p.acker.Delete(ctx, msg) != nil {
		p.lost(msg, "sent to the dead-letter queue, but its lease was lost before the delete")
		return true
	}
	p.leases.Handled(msg)
	p.metrics.MessagesProcessed.WithLabelValues(metrics.OutcomeDeadLettered).Inc()
	p.log.Info("handler said the message can never succeed; sent it to the dead-letter queue", fields...)
	return true
}

func (p *Pool) lost(msg *message.Message, why string) {
	p.log.Warn(why, zap.String("message_id", msg.ID))
	p.metrics.MessagesProcessed.WithLabelValues(metrics.OutcomeLost).Inc()
	p.leases.Remove(msg)
}

// call runs the handler, turning a panic into an error with its stack.
func (p *Pool) call(ctx context.Context, msg *message.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", errPanic, r, debug.Stack())
		}
	}()
	return p.handler.Handle(ctx, msg)
}
