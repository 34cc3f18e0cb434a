package pool

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
)

// batchFunc is a batch handler made of a function.
type batchFunc struct {
	size   int
	window time.Duration
	f      func(ctx context.Context, msgs []*message.Message) []error
}

func (b batchFunc) Handle(ctx context.Context, msg *message.Message) error {
	return b.f(ctx, []*message.Message{msg})[0]
}

func (b batchFunc) HandleBatch(ctx context.Context, msgs []*message.Message) []error {
	return b.f(ctx, msgs)
}

func (b batchFunc) Batching() (int, time.Duration) { return b.size, b.window }

// TestPoolBatches: a batch handler gets the buffered messages in batches
// of at most its size, as many calls at once as concurrency holds
// batches, and each message is settled by its own result: deleted, or
// retried alone.
func TestPoolBatches(t *testing.T) {
	t.Parallel()
	const n, size = 22, 4
	var mu sync.Mutex
	var sizes []int
	seen := map[string]int{}
	running, most := 0, 0
	// The first call waits for a second to start, so that two run at once.
	two := make(chan struct{})
	var twoOnce sync.Once
	h := batchFunc{size: size, window: time.Minute, f: func(_ context.Context, msgs []*message.Message) []error {
		mu.Lock()
		running++
		most = max(most, running)
		if running == 2 {
			twoOnce.Do(func() { close(two) })
		}
		sizes = append(sizes, len(msgs))
		for _, m := range msgs {
			seen[m.ID]++
		}
		mu.Unlock()
		select {
		case <-two:
		case <-time.After(time.Second):
		}
		mu.Lock()
		running--
		mu.Unlock()
		errs := make([]error, len(msgs))
		errs[0] = errors.New("the first of each batch fails")
		return errs
	}}
	tp := newTestPool(Config{Concurrency: 2 * size}, h)
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = newMessage("m"+strconv.Itoa(i), 1)
	}
	wait(t, tp.start(context.Background(), feed(msgs...)), "the pool")

	for _, m := range msgs {
		if seen[m.ID] != 1 {
			t.Errorf("%s handled %d times, want once", m.ID, seen[m.ID])
		}
	}
	total := 0
	for _, s := range sizes {
		if s > size {
			t.Errorf("a batch of %d, over %d", s, size)
		}
		total += s
	}
	if total != n || len(sizes) > n/2 {
		t.Errorf("batches %v: want %d messages gathered in batches of up to %d", sizes, n, size)
	}
	if most > 2 {
		t.Errorf("%d batches ran at once, want at most 2 (concurrency %d ÷ batch size %d)", most, 2*size, size)
	}
	retried := tp.leases.snapshot().retries
	if len(retried) != len(sizes) || len(tp.acker.all()) != n-len(sizes) {
		t.Errorf("%d retried and %d deleted, want %d and %d", len(retried), len(tp.acker.all()), len(sizes), n-len(sizes))
	}
	if got := tp.outcome(metrics.OutcomeSuccess); got != float64(n-len(sizes)) {
		t.Errorf("success outcome %v, want %d", got, n-len(sizes))
	}
}

// TestPoolBatchCancelledOnlyWhenEveryLeaseIsLost: a batch's call goes on
// while any of its messages is still held (a lost lease does not cut it
// short for the rest), and its context ends once every lease is lost;
// no message of it is deleted with a stale receipt handle.
func TestPoolBatchCancelledOnlyWhenEveryLeaseIsLost(t *testing.T) {
	t.Parallel()
	const n = 3
	started := make(chan context.Context, 1)
	h := batchFunc{size: n, window: time.Minute, f: func(ctx context.Context, msgs []*message.Message) []error {
		started <- ctx
		<-ctx.Done()
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = context.Cause(ctx)
		}
		return errs
	}}
	tp := newTestPool(Config{Concurrency: n}, h)
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = newMessage("m"+strconv.Itoa(i), 1)
	}
	done := tp.start(context.Background(), feed(msgs...))
	var ctx context.Context
	select {
	case ctx = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the batch did not start")
	}
	for _, m := range msgs[:n-1] {
		tp.leases.lose(m)
	}
	select {
	case <-ctx.Done():
		t.Fatalf("batch cancelled with a lease still held: %v", context.Cause(ctx))
	case <-time.After(50 * time.Millisecond):
	}
	tp.leases.lose(msgs[n-1])
	wait(t, ctx.Done(), "the batch's cancellation")
	wait(t, done, "the pool")
	if d := tp.acker.all(); len(d) != 0 {
		t.Errorf("deleted %d messages whose leases were lost", len(d))
	}
	if got := tp.outcome(metrics.OutcomeLost); got != n {
		t.Errorf("lost outcome %v, want %d", got, n)
	}
}

// TestPoolFIFOBatches: on a FIFO queue a batch holds one message of each
// group, and a group's next message runs in a later batch, after the one
// before it succeeded.
func TestPoolFIFOBatches(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	h := batchFunc{size: 10, f: func(_ context.Context, msgs []*message.Message) []error {
		mu.Lock()
		defer mu.Unlock()
		groups := map[string]bool{}
		for _, m := range msgs {
			if groups[m.GroupID] {
				t.Errorf("two messages of group %s in one batch", m.GroupID)
			}
			groups[m.GroupID] = true
			order = append(order, m.ID)
		}
		return make([]error, len(msgs))
	}}
	tp := newTestPool(Config{Concurrency: 10, FIFO: true}, h)
	var msgs []*message.Message
	for seq := range 3 {
		for g := range 2 {
			msgs = append(msgs, groupMessage(g, seq))
		}
	}
	wait(t, tp.start(context.Background(), feed(msgs...)), "the pool")
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	for _, m := range msgs {
		if _, ok := pos[m.ID]; !ok {
			t.Errorf("%s never handled", m.ID)
		}
	}
	for g := range 2 {
		for seq := 1; seq < 3; seq++ {
			if pos[groupMessage(g, seq).ID] < pos[groupMessage(g, seq-1).ID] {
				t.Errorf("group %d out of order: %v", g, order)
			}
		}
	}
	if len(tp.acker.all()) != len(msgs) {
		t.Errorf("deleted %d, want %d", len(tp.acker.all()), len(msgs))
	}
}
