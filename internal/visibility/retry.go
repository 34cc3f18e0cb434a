package visibility

import (
	"context"
	"sync"
	"time"

	"github.com/sqsworker/sqsworker/internal/message"
)

// retryFlushInterval is how long a retry waits for others to share its
// ChangeMessageVisibilityBatch call.
const retryFlushInterval = 10 * time.Millisecond

// retryBatcher coalesces the retries of many handlers into batch calls of
// up to ten, each entry with its own delay: a queue where many messages
// fail costs a tenth of the requests it would one by one.
type retryBatcher struct {
	m     *Manager
	mu    sync.Mutex
	queue []pendingRetry
	timer *time.Timer
}

type pendingRetry struct {
	msg   *message.Message
	delay time.Duration
	done  chan struct{}
}

// Retry ends msg's lease with a visibility change to delay: SQS delivers it
// again after that. The change shares a batch call with other retries of
// the next few milliseconds; Retry returns once it was sent, or when ctx is
// done. The lease is removed whatever SQS answers; if the change fails the
// message comes back when its current lease runs out.
func (m *Manager) Retry(ctx context.Context, msg *message.Message, delay time.Duration) {
	p := pendingRetry{msg: msg, delay: delay, done: make(chan struct{})}
	m.retries.add(p)
	m.metrics.MessagesRetried.Inc()
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

func (b *retryBatcher) add(p pendingRetry) {
	b.mu.Lock()
	b.queue = append(b.queue, p)
	switch {
	case len(b.queue) >= maxBatch:
		batch := b.take()
		b.mu.Unlock()
		go b.send(batch)
		return
	case len(b.queue) == 1:
		b.timer = time.AfterFunc(retryFlushInterval, b.flush)
	}
	b.mu.Unlock()
}

// take empties the queue; b.mu is held.
func (b *retryBatcher) take() []pendingRetry {
	batch := b.queue
	b.queue = nil
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	return batch
}

func (b *retryBatcher) flush() {
	b.mu.Lock()
	batch := b.take()
	b.mu.Unlock()
	if len(batch) > 0 {
		b.send(batch)
	}
}

// send makes one batch call (with change's retries of transient failures)
// and removes the leases. It runs on no caller's context: a retry already
// decided is sent even if its caller stopped waiting.
func (b *retryBatcher) send(batch []pendingRetry) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*b.m.cfg.RequestTimeout)
	defer cancel()
	msgs := make([]*message.Message, len(batch))
	delays := make([]time.Duration, len(batch))
	for i, p := range batch {
		msgs[i], delays[i] = p.msg, p.delay
	}
	b.m.change(ctx, msgs, delays, false, func(*message.Message, time.Time) {}, func(*message.Message) {})
	for _, p := range batch {
		b.m.Remove(p.msg)
		close(p.done)
	}
}
