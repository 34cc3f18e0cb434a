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
	cancels  map[*message.Message]context.CancelCauseFunc
}

func newFakeLeases() *fakeLeases {
	return &fakeLeases{dead: map[*message.Message]bool{}, noStart: map[*message.Message]bool{},
		cancels: map[*message.Message]context.CancelCauseFunc{}}
}

func (l *fakeLeases) Begin(msg *message.Message, cancel context.CancelCauseFunc) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.noStart[msg] {
		return false
	}
	l.started = append(l.started, msg)
	l.cancels[msg] = cancel
	return true
}

// lose loses msg's lease as the lease table does: dead, and its handler's
// context cancelled.
func (l *fakeLeases) lose(msg *message.Message) {
	l.mu.Lock()
	l.dead[msg] = true
	cancel := l.cancels[msg]
	l.mu.Unlock()
	cancel(errors.New("lease lost"))
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
