package pool

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

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
