package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/downstream"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
)

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
	w := p.newWatch(workCtx, msg)
	defer w.cancel(nil)
	ctx := w.msgCtx
	if !p.leases.Begin(msg, w.lost) {
		p.lost(msg, "lease lost while the message waited for a handler")
		return false
	}
	for retries := 0; ; retries++ {
		permit, err := p.acquire(ctx)
		if err != nil {
			p.notStarted(workCtx, msg)
			return false
		}
		took, returned, err := p.attempt(w)
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
			if d, ok := p.localRetry(msg, retries, err); ok {
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
	// lastReceiveMaxWait caps the backoff of a message kept on its last
	// receive.
	lastReceiveMaxWait = 30 * time.Second
)

// localRetry says whether to run the message again here, and after how
// long: a delay the downstream asked for, else a short doubling backoff.
// On the message's last receive it is always kept: handed back, SQS
// would move it to the dead-letter queue for a failure that is not its
// own. It is retried here, backing off to lastReceiveMaxWait, until the
// downstream takes it or its lease ends (--max-processing-time).
func (p *Pool) localRetry(msg *message.Message, retries int, err error) (time.Duration, bool) {
	if p.cfg.Gate == nil {
		return 0, false
	}
	d, asked := handler.RetryAfter(err)
	if p.cfg.MaxReceiveCount > 0 && msg.ReceiveCount >= p.cfg.MaxReceiveCount {
		if !asked {
			d = backoff.Jitter(backoff.Exponential(retries+1, localRetryBackoff, lastReceiveMaxWait))
		}
		return min(d, lastReceiveMaxWait), true
	}
	if retries >= localRetries {
		return 0, false
	}
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
func (p *Pool) attempt(w *handlerWatch) (took time.Duration, returned bool, err error) {
	ctx := w.msgCtx
	if p.cfg.HandlerTimeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, p.cfg.HandlerTimeout, errHandlerTimeout)
		defer cancelTimeout()
	}
	p.metrics.HandlersRunning.Inc()
	start := time.Now()
	stop := p.begin(w, ctx)
	err = p.call(ctx, w.msg)
	took = time.Since(start)
	p.metrics.HandlersRunning.Dec()
	p.metrics.HandlerDuration.Observe(took.Seconds())
	if err != nil && errors.Is(context.Cause(ctx), errHandlerTimeout) {
		err = fmt.Errorf("%w: %w", errHandlerTimeout, err)
	}
	return took, p.returned(w, stop), err
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
