package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/downstream"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// process runs the handler on one message, or with a batch handler on a
// batch, and settles each message; ok[i] reports whether msgs[i]
// succeeded. A failure the downstream is to blame for does not go back to
// SQS while the downstream is failing (each receive counts toward the
// dead-letter queue): the message is held, its lease kept alive, and run
// again when the gate lets it; one such failure while the downstream is
// healthy is retried here a few times before it is. A batch's messages
// that failed so are run again together, the others settled at once.
func (p *Pool) process(workCtx context.Context, msgs []*message.Message, ok []bool) {
	if p.draining.Load() {
		p.release(context.WithoutCancel(workCtx), slices.Clone(msgs))
		return
	}
	w := p.newWatch(workCtx, msgs[0], len(msgs))
	defer w.cancel(nil)
	ctx := w.msgCtx
	// One message's slices stay on the stack.
	var liveOne [1]int
	var errsOne [1]error
	live, errs := liveOne[:0], errsOne[:]
	if len(msgs) > 1 {
		live, errs = make([]int, 0, len(msgs)), make([]error, len(msgs))
	}
	live = p.beginLeases(w, msgs, live)
	for retries := 0; len(live) > 0; retries++ {
		permit, err := p.acquire(ctx)
		if err != nil {
			p.notStarted(workCtx, msgs, live)
			return
		}
		if p.batch != nil {
			w.msgs = make([]*message.Message, len(live))
			for j, i := range live {
				w.msgs[j] = msgs[i]
			}
		}
		took, returned := p.attempt(w, errs[:len(live)])
		kind := downstream.Ignored
		for _, err := range errs[:len(live)] {
			kind = max(kind, p.classify(workCtx, ctx, err))
		}
		hold := false
		if permit != nil {
			hold = permit.Done(kind)
		}
		if !returned {
			// It ignored its cancellation and its messages were settled
			// without it; until now its slot stayed busy, so concurrency
			// still bounded what ran.
			p.metrics.HandlersHung.Dec()
			return
		}
		again, wait := live[:0], time.Duration(0)
		for j, i := range live {
			msg, err := msgs[i], errs[j]
			if p.classify(workCtx, ctx, err).Downstream() && p.leases.Alive(msg) {
				if hold {
					if ce := p.log.Check(zap.DebugLevel, "downstream failing; holding the message"); ce != nil {
						ce.Write(zap.String("message_id", msg.ID), zap.Error(err))
					}
					again = append(again, i)
					continue
				}
				if d, retry := p.localRetry(msg, retries, err); retry {
					again, wait = append(again, i), max(wait, d)
					continue
				}
			}
			p.leases.ObserveDuration(took)
			ok[i] = p.settle(workCtx, ctx, msg, err)
			if w.leave(i) {
				w.cancel(nil)
			}
		}
		live = again
		if len(live) > 0 && wait > 0 && !p.sleep(ctx, wait) {
			p.notStarted(workCtx, msgs, live)
			return
		}
	}
}

// beginLeases attaches the call's cancellation to each message's lease,
// and appends to live the indexes of the messages whose lease is still
// held.
func (p *Pool) beginLeases(w *handlerWatch, msgs []*message.Message, live []int) []int {
	for i, msg := range msgs {
		cancel := w.lost
		if p.batch != nil {
			cancel = w.lostOf(i)
		}
		if !p.leases.Begin(msg, cancel) {
			p.lost(msg, "lease lost while the message waited for a handler")
			if w.leave(i) {
				w.cancel(nil)
			}
			continue
		}
		live = append(live, i)
	}
	return live
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

// notStarted settles the messages msgs[i] for i in live that the gate or
// a local retry held when the wait was cut short: released on a stop
// (they count as released, not failed), lost when their lease was lost
// (they exceeded the maximum processing time while held, or their receipt
// handle went stale).
func (p *Pool) notStarted(workCtx context.Context, msgs []*message.Message, live []int) {
	var release []*message.Message
	for _, i := range live {
		if !p.leases.Alive(msgs[i]) {
			p.lost(msgs[i], "lease lost while the message was held for the downstream")
			continue
		}
		release = append(release, msgs[i])
	}
	p.release(context.WithoutCancel(workCtx), release)
}

// attempt runs the handler once on w's messages under their context, with
// the handler timeout, and sets each message's result in errs. returned
// is false when the handler ignored its cancellation and its watch
// settled the messages without it.
func (p *Pool) attempt(w *handlerWatch, errs []error) (took time.Duration, returned bool) {
	ctx := w.msgCtx
	if p.cfg.HandlerTimeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, p.cfg.HandlerTimeout, errHandlerTimeout)
		defer cancelTimeout()
	}
	n := float64(len(errs))
	p.metrics.HandlersRunning.Add(n)
	start := time.Now()
	stop := p.begin(w, ctx)
	p.call(ctx, w.msgs, errs)
	took = time.Since(start)
	p.metrics.HandlersRunning.Sub(n)
	timedOut := errors.Is(context.Cause(ctx), errHandlerTimeout)
	for i, err := range errs {
		p.metrics.HandlerDuration.Observe(took.Seconds())
		if err != nil && timedOut {
			errs[i] = fmt.Errorf("%w: %w", errHandlerTimeout, err)
		}
	}
	return took, p.returned(w, stop)
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

// call runs the handler on msgs, one message or a batch, and sets each
// message's result in errs, turning a panic into an error with its stack.
func (p *Pool) call(ctx context.Context, msgs []*message.Message, errs []error) {
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("%w: %v\n%s", errPanic, r, debug.Stack())
			for i := range errs {
				errs[i] = err
			}
		}
	}()
	if p.batch == nil {
		errs[0] = p.handler.Handle(ctx, msgs[0])
		return
	}
	got := p.batch.HandleBatch(ctx, msgs)
	if len(got) != len(msgs) {
		err := fmt.Errorf("batch handler returned %d results for %d messages", len(got), len(msgs))
		for i := range errs {
			errs[i] = err
		}
		return
	}
	copy(errs, got)
}

// settle ends msg's lease by its handler's result: delete on success,
// retry after a delay on failure, release on a forced shutdown, nothing
// (but counting) when the lease was lost. It reports success.
func (p *Pool) settle(workCtx, ctx context.Context, msg *message.Message, err error) bool {
	bg := p.settleCtx
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
	case downstream.Classify(err).Downstream():
		// The downstream's failure, not the message's: the breaker's
		// state changes are the lines to read, not one per message.
		p.log.Debug("downstream failed; will retry the message", fields...)
	default:
		p.log.Info("handler failed; will retry the message", fields...)
	}
	rctx, cancelRetry := context.WithTimeout(bg, p.cfg.ChangeTimeout)
	defer cancelRetry()
	p.leases.Retry(rctx, msg, max(delay, 0))
	return false
}
