package pool

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
)

// handlerWatch is the handler calls of one message, or of one batch, and
// settles the messages without their handler when it ignores its
// cancellation: HangGrace after the handler's context is cancelled (its
// leases lost, the handler timeout, a forced stop), if the handler has not
// returned, the watch settles the messages of its call (as a timeout, a
// lost lease or a release, by the cancellation's cause). Whatever cancels
// the context arms the watch, so a handler that returns in time costs no
// timer and no goroutine.
type handlerWatch struct {
	p *Pool
	// msgs are the messages of the call running, or about to: set before
	// begin, read after it.
	msgs    []*message.Message
	one     [1]*message.Message
	workCtx context.Context
	// msgCtx is the call's context, ended by cancel: its leases lost, a
	// forced stop, or its messages settled.
	msgCtx context.Context
	cancel context.CancelCauseFunc
	state  atomic.Int32 // watchRunning, watchReturned or watchAbandoned
	armed  atomic.Bool
	// A batch's call goes on while any of its messages is still held:
	// out marks the messages whose lease is lost or that are settled, and
	// left counts the others.
	out  []atomic.Bool
	left atomic.Int32
}

const (
	watchReturned = iota
	watchRunning
	watchAbandoned
)

// newWatch watches the calls of msg, or, for a batch handler, of a batch
// of n messages (each attempt sets msgs then).
func (p *Pool) newWatch(workCtx context.Context, msg *message.Message, n int) *handlerWatch {
	ctx, cancel := context.WithCancelCause(workCtx)
	w := &handlerWatch{p: p, workCtx: workCtx, msgCtx: ctx, cancel: cancel}
	if p.batch == nil {
		w.one[0] = msg
		w.msgs = w.one[:]
		return w
	}
	w.out = make([]atomic.Bool, n)
	w.left.Store(int32(n)) //nolint:gosec // a batch is at most handler.MaxBatchSize
	return w
}

// lost cancels the call's context, as the lease table does when the lease
// is lost, and arms the watch.
func (w *handlerWatch) lost(cause error) {
	w.cancel(cause)
	w.p.arm(w, w.msgCtx)
}

// lostOf is lost for message i of a batch: the call is cancelled once
// every message of it is out.
func (w *handlerWatch) lostOf(i int) context.CancelCauseFunc {
	return func(cause error) {
		if w.leave(i) {
			w.lost(cause)
		}
	}
}

// leave marks message i of a batch out of its call; it reports whether
// it was the last one in. A single message's watch has no count.
func (w *handlerWatch) leave(i int) bool {
	return w.out != nil && w.out[i].CompareAndSwap(false, true) && w.left.Add(-1) == 0
}

// begin marks a handler call under ctx (msgCtx, or a child of it with the
// handler timeout) as running. The returned stop, when not nil, must be
// called once it returned.
func (p *Pool) begin(w *handlerWatch, ctx context.Context) (stop func() bool) {
	w.state.Store(watchRunning)
	p.runMu.Lock()
	p.running[w] = struct{}{}
	p.runMu.Unlock()
	if ctx != w.msgCtx {
		// Its own deadline: nobody else cancels it.
		return context.AfterFunc(ctx, func() { p.arm(w, ctx) })
	}
	if ctx.Err() != nil {
		p.arm(w, ctx) // cancelled before armAll could see it running
	}
	return nil
}

// arm settles w's message HangGrace from now unless its handler returns
// first; ctx is the cancelled context, whose cause says why. Nothing is
// armed while no handler runs: begin arms a call that starts cancelled.
func (p *Pool) arm(w *handlerWatch, ctx context.Context) {
	if w.state.Load() != watchRunning || !w.armed.CompareAndSwap(false, true) {
		return
	}
	grace := p.cfg.HangGrace
	time.AfterFunc(grace, func() {
		if !w.state.CompareAndSwap(watchRunning, watchAbandoned) {
			return
		}
		p.metrics.HandlersHung.Inc()
		err := fmt.Errorf("%w for %s: %w", errHung, grace, context.Cause(ctx))
		for _, msg := range w.msgs {
			p.log.Error("handler ignored its cancellation; settling its message without it (its slot stays busy until it returns)",
				zap.String("message_id", msg.ID), zap.Duration("grace", grace), zap.Error(context.Cause(ctx)))
			p.settle(w.workCtx, ctx, msg, err)
		}
	})
}

// armAll arms the watch of every running handler: the pool's context
// ended, a forced stop.
func (p *Pool) armAll() {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	for w := range p.running {
		p.arm(w, w.msgCtx)
	}
}

// returned reports whether the handler returned before the watch gave up
// on it, in which case its result settles the message. stop is begin's.
func (p *Pool) returned(w *handlerWatch, stop func() bool) bool {
	if stop != nil {
		stop()
	}
	p.runMu.Lock()
	delete(p.running, w)
	p.runMu.Unlock()
	return w.state.CompareAndSwap(watchRunning, watchReturned)
}

// abandonRunning releases, in batches, the messages of every handler still
// running after a forced stop cancelled them: the process goes on without
// waiting for them. Their slots count as hung.
func (p *Pool) abandonRunning(ctx context.Context) int {
	var msgs []*message.Message
	p.runMu.Lock()
	for w := range p.running {
		if w.state.CompareAndSwap(watchRunning, watchAbandoned) {
			msgs = append(msgs, w.msgs...)
		}
	}
	p.runMu.Unlock()
	p.metrics.HandlersHung.Add(float64(len(msgs)))
	p.release(ctx, msgs)
	return len(msgs)
}
