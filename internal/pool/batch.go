package pool

import (
	"context"
	"time"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
)

// gatherWindow is how long a batch waits at least for more messages: a
// receive's messages reach the pool within microseconds of each other,
// and they belong in one call, as Lambda's event source mapping sends a
// receive's messages together.
const gatherWindow = time.Millisecond

// Slots is how many handler calls run at once at concurrency: with a
// batch handler concurrency counts messages, and each call takes a batch.
func Slots(concurrency int, h handler.Handler) int {
	if bh, ok := h.(handler.BatchHandler); ok {
		size, _ := bh.Batching()
		return max(1, (concurrency+size-1)/max(size, 1))
	}
	return concurrency
}

// gather makes a batch of first and the messages that follow it from in,
// up to the batch size, waiting for them at most the batch window (and
// at least gatherWindow). It stops early when the pool drains or in is
// closed. On FIFO queues only messages whose group may start join; the
// others queue behind their group as they do for one message a call.
func (p *Pool) gather(workCtx context.Context, first *message.Message, in <-chan *message.Message) []*message.Message {
	batch := make([]*message.Message, 1, min(p.batchSize, 64))
	batch[0] = first
	var window *time.Timer
	defer func() {
		if window != nil {
			window.Stop()
		}
	}()
	defer func() { p.metrics.MessagesBuffered.Set(float64(len(in))) }()
	for len(batch) < p.batchSize {
		var msg *message.Message
		var ok bool
		select {
		case msg, ok = <-in:
		default:
			if window == nil {
				window = time.NewTimer(max(p.batchWindow, gatherWindow))
			}
			select {
			case msg, ok = <-in:
			case <-window.C:
				return batch
			case <-p.drain:
				return batch
			}
		}
		if !ok {
			return batch
		}
		start, fenced := p.claimGroup(msg)
		if fenced {
			p.release(workCtx, []*message.Message{msg})
		}
		if start {
			batch = append(batch, msg)
		}
	}
	return batch
}

// goBatch runs batch on the slot run took for it.
func (p *Pool) goBatch(workCtx context.Context, batch []*message.Message) {
	if err := p.pond.Go(func() {
		defer func() { <-p.slots }()
		p.runBatch(workCtx, batch)
	}); err != nil {
		<-p.slots // cannot happen while Run owns the pool; never drop a message
		p.release(workCtx, batch)
	}
}

// runBatch handles batch and then, on FIFO queues, the next message of
// each of its groups, as the next batch on the same slot: a group whose
// message failed is fenced and the rest of it released (nextOfGroup).
func (p *Pool) runBatch(workCtx context.Context, batch []*message.Message) {
	for len(batch) > 0 {
		began := time.Now()
		ok := make([]bool, len(batch))
		p.process(workCtx, batch, ok)
		if !p.cfg.FIFO {
			return
		}
		var next []*message.Message
		for i, msg := range batch {
			if m := p.nextOfGroup(workCtx, msg, ok[i], began); m != nil {
				next = append(next, m)
			}
		}
		batch = next
	}
}
