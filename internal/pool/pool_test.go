package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

type retried struct {
	msg   *message.Message
	delay time.Duration
}

// fakeLeases records what the pool does with each lease. A lease is alive
// unless killed; Start fails for the messages in noStart.
type fakeLeases struct {
	mu       sync.Mutex
	dead     map[*message.Message]bool
	noStart  map[*message.Message]bool
	started  []*message.Message
	removed  []*message.Message
	handled  []*message.Message
	retries  []retried
	released []*message.Message
	observed int
}

func newFakeLeases() *fakeLeases {
	return &fakeLeases{dead: map[*message.Message]bool{}, noStart: map[*message.Message]bool{}}
}

func (l *fakeLeases) Begin(msg *message.Message, _ context.CancelCauseFunc) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.noStart[msg] {
		return false
	}
	l.started = append(l.started, msg)
	return true
}

func (l *fakeLeases) Alive(msg *message.Message) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.dead[msg]
}

func (l *fakeLeases) kill(msg *message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dead[msg] = true
}

func (l *fakeLeases) Remove(msg *message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removed = append(l.removed, msg)
}

func (l *fakeLeases) Handled(msg *message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handled = append(l.handled, msg)
}

func (l *fakeLeases) Retry(_ context.Context, msg *message.Message, delay time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retries = append(l.retries, retried{msg, delay})
}

func (l *fakeLeases) Release(ctx context.Context, msgs []*message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ctx.Err() != nil {
		panic("Release with a done context")
	}
	l.released = append(l.released, msgs...)
}

func (l *fakeLeases) ObserveDuration(time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observed++
}

type leaseLog struct {
	removed, released []*message.Message
	retries           []retried
	observed          int
}

func (l *fakeLeases) snapshot() leaseLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	return leaseLog{
		removed: slices.Clone(l.removed), released: slices.Clone(l.released),
		retries: slices.Clone(l.retries), observed: l.observed,
	}
}

// fakeAcker is an Acker whose Delete is DeleteFunc (success when nil); it
// records every message it is given.
type fakeAcker struct {
	Acker
	DeleteFunc func(ctx context.Context, msg *message.Message) error

	mu      sync.Mutex
	deleted []*message.Message
}

func (a *fakeAcker) Delete(ctx context.Context, msg *message.Message) error {
	a.mu.Lock()
	a.deleted = append(a.deleted, msg)
	a.mu.Unlock()
	if a.DeleteFunc != nil {
		return a.DeleteFunc(ctx, msg)
	}
	return nil
}

func (a *fakeAcker) all() []*message.Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.deleted)
}

type testPool struct {
	*Pool
	cfg     Config
	handler handler.Handler
	leases  *fakeLeases
	acker   *fakeAcker
	metrics *metrics.Metrics
}

func newTestPool(cfg Config, h handler.Handler) *testPool {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	if cfg.RetryBackoffMin == 0 {
		cfg.RetryBackoffMin, cfg.RetryBackoffMax = time.Second, 15*time.Minute
	}
	return &testPool{cfg: cfg, handler: h, leases: newFakeLeases(), acker: &fakeAcker{}, metrics: metrics.New()}
}

// start runs the pool over in, with ctx the parent of the handlers'
// contexts; the returned channel is closed when in is closed and every
// handler has returned.
func (tp *testPool) start(ctx context.Context, in <-chan *message.Message) <-chan struct{} {
	tp.Pool = New(tp.cfg, tp.handler, tp.leases, tp.acker, in, zap.NewNop(), tp.metrics)
	if err := tp.Start(ctx); err != nil {
		panic(err)
	}
	return tp.Done()
}

// stopAsync begins a graceful Stop without waiting for it.
func (tp *testPool) stopAsync() {
	go func() { _ = tp.Stop(context.Background()) }()
}

func (tp *testPool) outcome(o string) float64 {
	return testkit.Value(tp.metrics.MessagesProcessed.WithLabelValues(o))
}

func wait(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func newMessage(id string, receiveCount int) *message.Message {
	now := time.Now()
	return &message.Message{
		ID: id, ReceiptHandle: "handle-" + id, Body: "body-" + id,
		ReceivedAt: now, FirstReceivedAt: now, ReceiveCount: receiveCount,
	}
}

// feed returns a closed channel holding msgs.
func feed(msgs ...*message.Message) <-chan *message.Message {
	in := make(chan *message.Message, len(msgs))
	for _, m := range msgs {
		in <- m
	}
	close(in)
	return in
}

func TestPoolOutcomes(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	fail := func(context.Context, *message.Message) error { return errBoom }
	ok := func(context.Context, *message.Message) error { return nil }
	tests := []struct {
		name         string
		cfg          Config
		receiveCount int
		handle       func(ctx context.Context, msg *message.Message) error
		// setup may change the lease table (the handler may call during).
		setup      func(l *fakeLeases, msg *message.Message)
		during     func(l *fakeLeases, msg *message.Message)
		deleteErr  error
		wantRan    bool
		wantDelete bool
		wantRetry  time.Duration // -1: no Retry
		wantRemove bool
		wantOut    string
	}{
		{name: "success", handle: ok, receiveCount: 1, wantRan: true, wantDelete: true, wantRetry: -1, wantOut: metrics.OutcomeSuccess},
		{name: "failure on first receive", handle: fail, receiveCount: 1, wantRan: true, wantRetry: time.Second, wantOut: metrics.OutcomeFailure},
		{name: "failure on second receive", handle: fail, receiveCount: 2, wantRan: true, wantRetry: 2 * time.Second, wantOut: metrics.OutcomeFailure},
		{name: "failure on fifth receive", handle: fail, receiveCount: 5, wantRan: true, wantRetry: 16 * time.Second, wantOut: metrics.OutcomeFailure},
		{name: "failure before the last receive", cfg: Config{MaxReceiveCount: 3}, handle: fail, receiveCount: 2, wantRan: true, wantRetry: 2 * time.Second, wantOut: metrics.OutcomeFailure},
		{name: "failure on the last receive goes to the DLQ at once", cfg: Config{MaxReceiveCount: 3}, handle: fail, receiveCount: 3, wantRan: true, wantRetry: 0, wantOut: metrics.OutcomeFailure},
		{name: "failure backoff capped", handle: fail, receiveCount: 40, wantRan: true, wantRetry: 15 * time.Minute, wantOut: metrics.OutcomeFailure},
		{
			name:         "retry after",
			receiveCount: 3,
			handle: func(context.Context, *message.Message) error {
				return fmt.Errorf("wrapped: %w", &handler.RetryAfterError{After: 42 * time.Second, Err: errBoom})
			},
			wantRan: true, wantRetry: 42 * time.Second, wantOut: metrics.OutcomeFailure,
		},
		{
			name:         "panic",
			receiveCount: 1,
			handle:       func(context.Context, *message.Message) error { panic("handler bug") },
			wantRan:      true, wantRetry: time.Second, wantOut: metrics.OutcomePanic,
		},
		{
			name:         "handler timeout",
			cfg:          Config{HandlerTimeout: 10 * time.Millisecond},
			receiveCount: 2,
			handle: func(ctx context.Context, _ *message.Message) error {
				<-ctx.Done()
				return ctx.Err()
			},
			wantRan: true, wantRetry: 2 * time.Second, wantOut: metrics.OutcomeTimeout,
		},
		{
			name:         "lease lost before start",
			receiveCount: 1,
			handle:       ok,
			setup:        func(l *fakeLeases, msg *message.Message) { l.noStart[msg] = true },
			wantRetry:    -1, wantRemove: true, wantOut: metrics.OutcomeLost,
		},
		{
			name:         "lease lost while a successful handler ran",
			receiveCount: 1,
			handle:       ok,
			during:       func(l *fakeLeases, msg *message.Message) { l.kill(msg) },
			wantRan:      true, wantRetry: -1, wantRemove: true, wantOut: metrics.OutcomeLost,
		},
		{
			name:         "lease lost while a failing handler ran",
			receiveCount: 1,
			handle:       fail,
			during:       func(l *fakeLeases, msg *message.Message) { l.kill(msg) },
			wantRan:      true, wantRetry: -1, wantRemove: true, wantOut: metrics.OutcomeLost,
		},
		{
			name:         "delete not queued",
			receiveCount: 1,
			handle:       ok,
			deleteErr:    context.DeadlineExceeded,
			wantRan:      true, wantDelete: true, wantRetry: -1, wantRemove: true, wantOut: metrics.OutcomeLost,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := newMessage("m", tt.receiveCount)
			var ran atomic.Int32
			var tp *testPool
			tp = newTestPool(tt.cfg, handler.Func(func(ctx context.Context, m *message.Message) error {
				ran.Add(1)
				if tt.during != nil {
					tt.during(tp.leases, m)
				}
				return tt.handle(ctx, m)
			}))
			if tt.deleteErr != nil {
				tp.acker.DeleteFunc = func(context.Context, *message.Message) error { return tt.deleteErr }
			}
			if tt.setup != nil {
				tt.setup(tp.leases, msg)
			}
			wait(t, tp.start(context.Background(), feed(msg)), "Run")

			if got := ran.Load() == 1; got != tt.wantRan {
				t.Errorf("handler ran = %v; want %v", got, tt.wantRan)
			}
			if got := len(tp.acker.all()) == 1; got != tt.wantDelete {
				t.Errorf("Delete called = %v; want %v", got, tt.wantDelete)
			}
			log := tp.leases.snapshot()
			switch {
			case tt.wantRetry < 0 && len(log.retries) != 0:
				t.Errorf("Retry called with %v; want no retry", log.retries[0].delay)
			case tt.wantRetry >= 0 && len(log.retries) != 1:
				t.Errorf("Retry called %d times; want once", len(log.retries))
			case tt.wantRetry >= 0 && log.retries[0].delay != tt.wantRetry:
				t.Errorf("Retry delay = %v; want %v", log.retries[0].delay, tt.wantRetry)
			}
			if got := len(log.removed) == 1; got != tt.wantRemove {
				t.Errorf("Remove called = %v; want %v", got, tt.wantRemove)
			}
			if len(log.released) != 0 {
				t.Errorf("released %d messages; want none", len(log.released))
			}
			if tt.wantRan && log.observed != 1 {
				t.Errorf("ObserveDuration called %d times; want 1", log.observed)
			}
			if got := tp.outcome(tt.wantOut); got != 1 {
				t.Errorf("outcome %s = %v; want 1", tt.wantOut, got)
			}
			if got := testkit.Value(tp.metrics.MessagesProcessed); got != 1 {
				t.Errorf("outcomes counted = %v; want 1", got)
			}
			if got := testkit.Value(tp.metrics.HandlersRunning); got != 0 {
				t.Errorf("handlers running = %v after Run; want 0", got)
			}
		})
	}
}

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

func TestPoolDrain(t *testing.T) {
	t.Parallel()
	started := make(chan *message.Message, 10)
	release := make(chan struct{})
	tp := newTestPool(Config{Concurrency: 1}, handler.Func(func(_ context.Context, m *message.Message) error {
		started <- m
		<-release
		return nil
	}))
	in := make(chan *message.Message, 10)
	done := tp.start(context.Background(), in)

	running := newMessage("running", 1)
	in <- running
	if got := <-started; got != running {
		t.Fatalf("started %s; want %s", got.ID, running.ID)
	}
	buffered := []*message.Message{newMessage("b1", 1), newMessage("b2", 1), newMessage("b3", 1)}
	for _, m := range buffered {
		in <- m
	}
	tp.stopAsync()
	tp.stopAsync() // harmless
	late := newMessage("late", 1)
	in <- late
	close(in)
	want := append(slices.Clone(buffered), late)
	testkit.Eventually(t, 10*time.Second, "the buffered messages to be released", func() bool {
		return len(tp.leases.snapshot().released) == len(want)
	})
	close(release)
	wait(t, done, "Run")

	select {
	case m := <-started:
		t.Errorf("handler ran %s after Drain", m.ID)
	default:
	}
	log := tp.leases.snapshot()
	for _, m := range want {
		if !slices.Contains(log.released, m) {
			t.Errorf("%s not released", m.ID)
		}
	}
	if slices.Contains(log.released, running) {
		t.Error("the running message was released; want it to finish")
	}
	if got := tp.acker.all(); len(got) != 1 || got[0] != running {
		t.Errorf("deleted %d messages; want only the running one", len(got))
	}
	if got := tp.outcome(metrics.OutcomeReleased); got != float64(len(want)) {
		t.Errorf("outcome released = %v; want %d", got, len(want))
	}
	if got := testkit.Value(tp.metrics.MessagesBuffered); got != 0 {
		t.Errorf("messages buffered = %v; want 0", got)
	}
}

func TestPoolForcedShutdownReleases(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	tp := newTestPool(Config{Concurrency: 1}, handler.Func(func(ctx context.Context, _ *message.Message) error {
		close(started)
		<-ctx.Done()
		return context.Cause(ctx)
	}))
	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	msg := newMessage("m", 1)
	done := tp.start(workCtx, feed(msg))
	<-started
	cancelWork()
	wait(t, done, "Run")
	log := tp.leases.snapshot()
	if len(log.released) != 1 || log.released[0] != msg {
		t.Errorf("released %v; want the cancelled message", log.released)
	}
	if len(log.retries) != 0 {
		t.Errorf("retried %d messages; want none: a cancelled handler's message is released", len(log.retries))
	}
	if got := tp.outcome(metrics.OutcomeReleased); got != 1 {
		t.Errorf("outcome released = %v; want 1", got)
	}
}

// groupMessage is message seq of group g.
func groupMessage(g, seq int) *message.Message {
	m := newMessage(fmt.Sprintf("g%d-%d", g, seq), 1)
	m.GroupID = fmt.Sprintf("g%d", g)
	return m
}

func TestPoolFIFOOrder(t *testing.T) {
	t.Parallel()
	const groups, perGroup = 5, 20
	var mu sync.Mutex
	seen := map[string][]string{}
	running := map[string]int{}
	overlap := false
	tp := newTestPool(Config{Concurrency: 4, FIFO: true}, handler.Func(func(_ context.Context, m *message.Message) error {
		mu.Lock()
		running[m.GroupID]++
		if running[m.GroupID] > 1 {
			overlap = true
		}
		seen[m.GroupID] = append(seen[m.GroupID], m.ID)
		mu.Unlock()
		mu.Lock()
		running[m.GroupID]--
		mu.Unlock()
		return nil
	}))
	in := make(chan *message.Message) // unbuffered: the pool sees them one by one
	done := tp.start(context.Background(), in)
	for seq := range perGroup {
		for g := range groups {
			in <- groupMessage(g, seq)
		}
	}
	close(in)
	wait(t, done, "Run")

	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Error("two messages of one group ran at once")
	}
	for g := range groups {
		var want []string
		for seq := range perGroup {
			want = append(want, groupMessage(g, seq).ID)
		}
		if got := seen[fmt.Sprintf("g%d", g)]; !slices.Equal(got, want) {
			t.Errorf("group g%d handled %v; want %v", g, got, want)
		}
	}
	if got := len(tp.acker.all()); got != groups*perGroup {
		t.Errorf("deletes = %d; want %d", got, groups*perGroup)
	}
}

func TestPoolFIFOFailureReleasesHeldGroup(t *testing.T) {
	t.Parallel()
	started := make(chan string, 10)
	proceed := map[string]chan error{"g0-0": make(chan error), "g1-0": make(chan error)}
	tp := newTestPool(Config{Concurrency: 2, FIFO: true}, handler.Func(func(_ context.Context, m *message.Message) error {
		started <- m.ID
		if c, ok := proceed[m.ID]; ok {
			return <-c
		}
		return nil
	}))
	in := make(chan *message.Message, 10)
	done := tp.start(context.Background(), in)

	a0, b0 := groupMessage(0, 0), groupMessage(1, 0)
	in <- a0
	in <- b0
	for range 2 {
		<-started
	}
	// g0's later messages queue behind a0 in the pool; a message of
	// another group after them shows the pool has read them.
	held := []*message.Message{groupMessage(0, 1), groupMessage(0, 2), groupMessage(0, 3)}
	for _, m := range held {
		in <- m
	}
	in <- groupMessage(1, 1)
	testkit.Eventually(t, 10*time.Second, "the pool to queue the held messages", func() bool { return len(in) == 0 })

	proceed["g0-0"] <- errors.New("boom")
	testkit.Eventually(t, 10*time.Second, "a0's group to be released", func() bool { return len(tp.leases.snapshot().released) == len(held) })
	proceed["g1-0"] <- nil
	close(in)
	wait(t, done, "Run")
	close(started)

	var ran []string
	for id := range started {
		ran = append(ran, id)
	}
	if want := []string{"g1-1"}; !slices.Equal(ran, want) {
		t.Errorf("after the first two, ran %v; want %v (g0's held messages must not run)", ran, want)
	}
	log := tp.leases.snapshot()
	if !slices.Equal(log.released, held) {
		t.Errorf("released %v; want g0's held messages in order", ids(log.released))
	}
	if len(log.retries) != 1 || log.retries[0].msg != a0 {
		t.Errorf("retries = %v; want a0 only", log.retries)
	}
}

// TestPoolFIFOFailureReleasesBufferedGroup covers the later messages of a
// failed group that this worker holds but the pool has not read yet: they
// sit in the channel while the pool waits for a slot.
func TestPoolFIFOFailureReleasesBufferedGroup(t *testing.T) {
	t.Parallel()
	started := make(chan string, 10)
	proceed := map[string]chan error{"g0-0": make(chan error), "g1-0": make(chan error)}
	tp := newTestPool(Config{Concurrency: 2, FIFO: true}, handler.Func(func(_ context.Context, m *message.Message) error {
		started <- m.ID
		if c, ok := proceed[m.ID]; ok {
			return <-c
		}
		return nil
	}))
	in := make(chan *message.Message, 10)
	done := tp.start(context.Background(), in)

	a0, b0 := groupMessage(0, 0), groupMessage(1, 0)
	in <- a0
	in <- b0
	for range 2 {
		<-started
	}
	// Both slots are busy: the pool reads c0 and waits for a slot with a1
	// still in the channel, received in the same batch as a0.
	c0, a1 := groupMessage(2, 0), groupMessage(0, 1)
	a1.ReceivedAt = a0.ReceivedAt
	in <- c0
	in <- a1
	testkit.Eventually(t, 10*time.Second, "the pool to read c0", func() bool { return len(in) == 1 })

	proceed["g0-0"] <- errors.New("boom")
	if id := <-started; id != c0.ID {
		t.Fatalf("started %s; want %s in the freed slot", id, c0.ID)
	}
	proceed["g1-0"] <- nil
	close(in)
	wait(t, done, "Run")
	close(started)

	for id := range started {
		if id == a1.ID {
			t.Errorf("%s ran after %s failed; want it released", a1.ID, a0.ID)
		}
	}
	if log := tp.leases.snapshot(); !slices.Contains(log.released, a1) {
		t.Errorf("released %v; want %s", ids(log.released), a1.ID)
	}
}

func ids(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func TestPoolStopBeforeStartAndTwice(t *testing.T) {
	t.Parallel()
	tp := newTestPool(Config{}, handler.Func(func(context.Context, *message.Message) error { return nil }))
	tp.Pool = New(tp.cfg, tp.handler, tp.leases, tp.acker, feed(), zap.NewNop(), tp.metrics)
	for i := range 2 {
		if err := tp.Stop(t.Context()); err != nil {
			t.Errorf("Stop #%d before Start = %v; want nil", i+1, err)
		}
	}
	if err := tp.Start(t.Context()); err == nil {
		t.Error("Start after Stop = nil; want an error")
	}
}

// TestPoolForcedStop: a Stop whose context ends cancels the running
// handlers; their messages are released, not retried or deleted.
func TestPoolForcedStop(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	tp := newTestPool(Config{Concurrency: 1, CancelGrace: time.Second}, handler.Func(func(ctx context.Context, _ *message.Message) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}))
	in := make(chan *message.Message, 1)
	in <- newMessage("running", 1)
	tp.start(context.Background(), in)
	<-started
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := tp.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("forced Stop = %v; want context.Canceled", err)
	}
	close(in)
	for i := range 2 { // later Stops wait for the same end
		if err := tp.Stop(t.Context()); err != nil {
			t.Errorf("Stop #%d after the forced one = %v; want nil", i+2, err)
		}
	}
	log := tp.leases.snapshot()
	if len(log.released) != 1 || len(log.retries) != 0 || len(tp.acker.all()) != 0 {
		t.Errorf("released %d, retried %d, deleted %d; want 1, 0, 0", len(log.released), len(log.retries), len(tp.acker.all()))
	}
}
