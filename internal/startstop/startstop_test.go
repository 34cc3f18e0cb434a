package startstop_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/sqsworker/sqsworker/internal/startstop"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) { testkit.WrapTestMain(m) }

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestStartOnce: a part starts once; a second Start, or a Start after
// Stop, is refused with ErrStarted.
func TestStartOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		before func(l *startstop.Lifecycle)
	}{
		{"started", func(l *startstop.Lifecycle) { _ = l.BeginStart() }},
		{"stopped before start", func(l *startstop.Lifecycle) { l.BeginStop() }},
		{"started and stopped", func(l *startstop.Lifecycle) {
			_ = l.BeginStart()
			l.BeginStop()
			l.Stopped()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var l startstop.Lifecycle
			tt.before(&l)
			if err := l.BeginStart(); !errors.Is(err, startstop.ErrStarted) {
				t.Errorf("Start after %s: %v, want ErrStarted", tt.name, err)
			}
		})
	}
}

// TestStopBeforeStartIsStoppedAtOnce: the zero value is a part that has
// not started; stopping it is harmless and ends it at once: Done is
// closed, Wait returns, it never runs, and nothing is left to stop.
func TestStopBeforeStartIsStoppedAtOnce(t *testing.T) {
	t.Parallel()
	var l startstop.Lifecycle
	if l.Running() || l.Stopping() || closed(l.Done()) {
		t.Fatalf("zero value: running %v, stopping %v, done %v; want none", l.Running(), l.Stopping(), closed(l.Done()))
	}
	first, running := l.BeginStop()
	if !first || running {
		t.Errorf("first Stop before Start: first %v, running %v; want first, not running", first, running)
	}
	if !closed(l.Done()) || l.Running() || !l.Stopping() {
		t.Errorf("after Stop before Start: done %v, running %v, stopping %v; want done, stopping, not running",
			closed(l.Done()), l.Running(), l.Stopping())
	}
	if err := l.Wait(t.Context()); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if first, running := l.BeginStop(); first || running {
		t.Errorf("second Stop: first %v, running %v; want neither", first, running)
	}
	l.Stopped() // harmless too: Done is closed once
}

// TestStopTwiceWaitsForTheSameEnd: of two Stops of a running part only
// the first is told to stop it; both see it running, and Done closes
// (Wait returns) only once the part says it has Stopped. Stopped twice is
// harmless.
func TestStopTwiceWaitsForTheSameEnd(t *testing.T) {
	t.Parallel()
	var l startstop.Lifecycle
	if err := l.BeginStart(); err != nil {
		t.Fatal(err)
	}
	if !l.Running() || l.Stopping() {
		t.Fatalf("after Start: running %v, stopping %v; want running only", l.Running(), l.Stopping())
	}
	if first, running := l.BeginStop(); !first || !running {
		t.Errorf("first Stop: first %v, running %v; want both", first, running)
	}
	if first, running := l.BeginStop(); first || !running {
		t.Errorf("second Stop: first %v, running %v; want running, not first", first, running)
	}
	if closed(l.Done()) || !l.Running() || !l.Stopping() {
		t.Errorf("stopping, before Stopped: done %v, running %v, stopping %v; want running and stopping, not done",
			closed(l.Done()), l.Running(), l.Stopping())
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a done context before Stopped: %v, want its error", err)
	}
	l.Stopped()
	l.Stopped()
	if !closed(l.Done()) || l.Running() {
		t.Errorf("after Stopped: done %v, running %v; want done, not running", closed(l.Done()), l.Running())
	}
	if err := l.Wait(t.Context()); err != nil {
		t.Errorf("Wait after Stopped: %v", err)
	}
}

// TestConcurrentStopsOneIsFirst: of many Stops at once exactly one is
// first, and every waiter returns once the part has stopped.
func TestConcurrentStopsOneIsFirst(t *testing.T) {
	t.Parallel()
	const stoppers = 50
	var l startstop.Lifecycle
	if err := l.BeginStart(); err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		firsts int
		errs   []error
	)
	for range stoppers {
		wg.Go(func() {
			first, _ := l.BeginStop()
			if first {
				l.Stopped()
			}
			err := l.Wait(context.Background())
			mu.Lock()
			defer mu.Unlock()
			if first {
				firsts++
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if firsts != 1 || len(errs) > 0 {
		t.Errorf("%d Stops: %d were first, waits failed with %v; want exactly one first, no failure", stoppers, firsts, errs)
	}
}
