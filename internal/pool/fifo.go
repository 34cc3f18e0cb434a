package pool

import (
	"context"
	"time"

	"github.com/sqsworker/sqsworker/internal/message"
)

// claimGroup reports whether msg may start now. On FIFO queues a message
// whose group is running is queued behind it; one received before its
// group's last failure must be released (fenced), not run.
func (p *Pool) claimGroup(msg *message.Message) (start, fenced bool) {
	if !p.cfg.FIFO {
		return true, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.groups[msg.GroupID]
	switch {
	case ok && g.running:
		g.pending = append(g.pending, msg)
		return false, false
	case ok && !msg.ReceivedAt.After(g.failedAt):
		return false, true
	}
	p.groups[msg.GroupID] = &group{running: true}
	return true, false
}

// runChain handles msg and then, on FIFO queues, the messages queued
// behind it in its group, in order, on the same slot.
func (p *Pool) runChain(workCtx context.Context, msg *message.Message) {
	for msg != nil {
		// SQS holds a FIFO group while one of its messages is in flight,
		// so any message of the group received after this point comes
		// after msg: only those received before are fenced on failure.
		began := time.Now()
		one, ok := [1]*message.Message{msg}, [1]bool{}
		p.process(workCtx, one[:], ok[:])
		if !p.cfg.FIFO {
			return
		}
		msg = p.nextOfGroup(workCtx, msg, ok[0], began)
	}
}

// nextOfGroup is the message of msg's group to run after msg, which
// succeeded (ok) or not, since began; nil when there is none. When msg
// failed the rest of the group is released without running, and the
// group fenced, so that SQS hands the group back in order.
func (p *Pool) nextOfGroup(workCtx context.Context, msg *message.Message, ok bool, began time.Time) *message.Message {
	p.mu.Lock()
	g := p.groups[msg.GroupID]
	if !ok || len(g.pending) == 0 || p.draining.Load() {
		rest := g.pending
		if ok {
			delete(p.groups, msg.GroupID)
		} else {
			// Fence what this worker received of the group so far but has
			// not read yet; SQS redelivers from the failure.
			g.running, g.pending, g.failedAt = false, nil, began
		}
		p.mu.Unlock()
		p.release(context.WithoutCancel(workCtx), rest)
		return nil
	}
	next := g.pending[0]
	g.pending = g.pending[1:]
	p.mu.Unlock()
	return next
}
