package pool

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
)

// handlerWatch settles a message without its handler when the handler
// ignores its cancellation: HangGrace after the handler's context is done,
// if the handler has not returned, the watch settles the message (as a
// timeout, a lost lease or a release, by the cancellation's cause). It
// costs no goroutine until then.
type handlerWatch struct {
	msg   *message.Message
	state atomic.Int32 // watchRunning, watchReturned or watchAbandoned
	stop  func() bool
}

const (
	watchRunning = iota
	watchReturned
	watchAbandoned
)

func (p *Pool) watch(workCtx, ctx context.Context, msg *message.Message) *handlerWatch {
	w := &handlerWatch{msg: msg}
	p.runMu.Lock()
	p.running[w] = struct{}{}
	p.runMu.Unlock()
	grace := p.cfg.HangGrace
	w.stop = context.AfterFunc(ctx, func() {
		time.AfterFunc(grace, func() {
			if !w.state.CompareAndSwap(watchRunning, watchAbandoned) {
				return
			}
			p.metrics.HandlersHung.Inc()
			p.log.Error("handler ignored its cancellation; settling its message without it (its slot stays busy until it returns)",
				zap.String("message_id", msg.ID), zap.Duration("grace", grace), zap.Error(context.Cause(ctx)))
			p.settle(workCtx, ctx, msg, fmt.Errorf("%w for %s: %w", errHung, grace, context.Cause(ctx)))
		})
	})
	return w
}

// returned reports whether the handler returned before the watch gave up
// on it, in which case its result settles the message.
func (p *Pool) returned(w *handlerWatch) bool {
	w.stop()
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
			msgs = append(msgs, w.msg)
		}
	}
	p.runMu.Unlock()
	p.metrics.HandlersHung.Add(float64(len(msgs)))
	p.release(ctx, msgs)
	return len(msgs)
}
