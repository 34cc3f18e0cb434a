package pool

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestPoolSurvivesPanics(t *testing.T) {
	t.Parallel()
	const n = 20
	var handled atomic.Int32
	tp := newTestPool(Config{Concurrency: 3}, handler.Func(func(_ context.Context, m *message.Message) error {
		handled.Add(1)
		var i int
		_, _ = fmt.Sscanf(m.ID, "m-%d", &i)
		if i%2 == 0 {
			panic(fmt.Sprintf("handler bug on %s", m.ID))
		}
		return nil
	}))
	var msgs []*message.Message
	for i := range n {
		msgs = append(msgs, newMessage(fmt.Sprintf("m-%d", i), 1))
	}
	wait(t, tp.start(context.Background(), feed(msgs...)), "Run")
	if got := handled.Load(); got != n {
		t.Errorf("handled %d; want %d", got, n)
	}
	if got := tp.outcome(metrics.OutcomePanic); got != n/2 {
		t.Errorf("outcome panic = %v; want %d", got, n/2)
	}
	if got := tp.outcome(metrics.OutcomeSuccess); got != n/2 {
		t.Errorf("outcome success = %v; want %d", got, n/2)
	}
	if got := len(tp.leases.snapshot().retries); got != n/2 {
		t.Errorf("retries = %d; want %d", got, n/2)
	}
	if got := len(tp.acker.all()); got != n/2 {
		t.Errorf("deletes = %d; want %d", got, n/2)
	}
}

// TestPoolHungHandlerSettledWithoutIt: a handler that ignores its
// cancellation has its message retried after the grace, while its slot
// stays busy until it returns.
func TestPoolHungHandlerSettledWithoutIt(t *testing.T) {
	t.Parallel()
	unblock := make(chan struct{})
	var started atomic.Int32
	tp := newTestPool(Config{Concurrency: 1, HandlerTimeout: 10 * time.Millisecond, HangGrace: 20 * time.Millisecond},
		handler.Func(func(_ context.Context, m *message.Message) error {
			started.Add(1)
			if m.ID == "hang" {
				<-unblock // ignores ctx
			}
			return nil
		}))
	done := tp.start(context.Background(), feed(newMessage("hang", 1), newMessage("next", 1)))
	testkit.Eventually(t, 10*time.Second, "the hung handler's message retried", func() bool { return len(tp.leases.snapshot().retries) == 1 })
	if got := tp.outcome(metrics.OutcomeTimeout); got != 1 {
		t.Errorf("outcome timeout = %v; want 1", got)
	}
	if got := testkit.Value(tp.metrics.HandlersHung); got != 1 {
		t.Errorf("handlers hung = %v; want 1", got)
	}
	if got := started.Load(); got != 1 {
		t.Errorf("%d handlers started while the only slot was held by a hung one; want 1", got)
	}
	close(unblock)
	wait(t, done, "Run")
	if got := testkit.Value(tp.metrics.HandlersHung); got != 0 {
		t.Errorf("handlers hung = %v after it returned; want 0", got)
	}
	if got := len(tp.acker.all()); got != 1 || tp.acker.all()[0].ID != "next" {
		t.Errorf("deleted %v; want only next (the hung one's late success is not a delete)", tp.acker.all())
	}
}

// TestPoolHungHandlerWatchedWhenCancelled: a handler that ignores the
// cancellation of its context, by a lost lease or by the pool's context
// ending (a forced stop), has its message settled without it after the
// grace: dropped when the lease was lost, released on a forced stop.
func TestPoolHungHandlerWatchedWhenCancelled(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name              string
		lost              bool
		removed, released int
	}{
		{name: "lease lost", lost: true, removed: 1},
		{name: "forced stop", released: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			unblock := make(chan struct{})
			started := make(chan struct{})
			tp := newTestPool(Config{Concurrency: 1, HangGrace: 20 * time.Millisecond},
				handler.Func(func(context.Context, *message.Message) error {
					close(started)
					<-unblock // ignores ctx
					return nil
				}))
			workCtx, cancelWork := context.WithCancel(context.Background())
			defer cancelWork()
			msg := newMessage("hang", 1)
			done := tp.start(workCtx, feed(msg))
			<-started
			if tt.lost {
				tp.leases.lose(msg)
			} else {
				cancelWork()
			}
			testkit.Eventually(t, 10*time.Second, "the hung handler's message settled without it", func() bool {
				return testkit.Value(tp.metrics.HandlersHung) == 1
			})
			close(unblock)
			wait(t, done, "Run")
			log := tp.leases.snapshot()
			if len(log.removed) != tt.removed || len(log.released) != tt.released || len(log.retries) != 0 || len(tp.acker.all()) != 0 {
				t.Errorf("removed %d, released %d, retried %d, deleted %d; want %d, %d, 0, 0",
					len(log.removed), len(log.released), len(log.retries), len(tp.acker.all()), tt.removed, tt.released)
			}
		})
	}
}

// TestPoolAbandonRunning: after a forced shutdown, the messages of handlers
// that ignore their cancellation are released at once, exactly once.
func TestPoolAbandonRunning(t *testing.T) {
	t.Parallel()
	unblock := make(chan struct{})
	started := make(chan struct{})
	tp := newTestPool(Config{Concurrency: 2}, handler.Func(func(context.Context, *message.Message) error {
		close(started)
		<-unblock // ignores ctx
		return nil
	}))
	workCtx, cancelWork := context.WithCancel(context.Background())
	done := tp.start(workCtx, feed(newMessage("hang", 1)))
	<-started
	cancelWork()
	if n := tp.abandonRunning(context.Background()); n != 1 {
		t.Errorf("abandonRunning = %d; want 1", n)
	}
	if n := tp.abandonRunning(context.Background()); n != 0 {
		t.Errorf("second abandonRunning = %d; want 0", n)
	}
	if got := len(tp.leases.snapshot().released); got != 1 {
		t.Errorf("released %d messages; want 1", got)
	}
	close(unblock)
	wait(t, done, "Run")
	log := tp.leases.snapshot()
	if len(log.released) != 1 || len(log.retries) != 0 || len(tp.acker.all()) != 0 {
		t.Errorf("after the handler returned: released %d, retried %d, deleted %d; want 1, 0, 0",
			len(log.released), len(log.retries), len(tp.acker.all()))
	}
	if got := testkit.Value(tp.metrics.HandlersHung); got != 0 {
		t.Errorf("handlers hung = %v after it returned; want 0", got)
	}
}

func TestPoolConcurrencyLimit(t *testing.T) {
	t.Parallel()
	const concurrency, n = 3, 12
	var running, most atomic.Int32
	release := make(chan struct{})
	tp := newTestPool(Config{Concurrency: concurrency}, handler.Func(func(context.Context, *message.Message) error {
		r := running.Add(1)
		for {
			m := most.Load()
			if r <= m || most.CompareAndSwap(m, r) {
				break
			}
		}
		<-release
		running.Add(-1)
		return nil
	}))
	var msgs []*message.Message
	for i := range n {
		msgs = append(msgs, newMessage(fmt.Sprintf("m-%d", i), 1))
	}
	done := tp.start(context.Background(), feed(msgs...))
	testkit.Eventually(t, 10*time.Second, "the pool to fill", func() bool { return running.Load() == concurrency })
	if got := testkit.Value(tp.metrics.HandlersRunning); got != concurrency {
		t.Errorf("handlers running = %v; want %d", got, concurrency)
	}
	close(release)
	wait(t, done, "Run")
	if got := most.Load(); got != concurrency {
		t.Errorf("at most %d handlers ran at once; want %d", got, concurrency)
	}
	if got := len(tp.acker.all()); got != n {
		t.Errorf("deletes = %d; want %d", got, n)
	}
}
