// Package startstop is the lifecycle every long-lived part of the worker
// shares: Start once, Stop any number of times (before Start too), every
// Stop waiting for the same end.
package startstop

import (
	"context"
	"errors"
	"sync"
)

// ErrStarted is returned by a second Start, or a Start after Stop.
var ErrStarted = errors.New("already started or stopped")

// Lifecycle is embedded by a part to keep its state. Its zero value is a
// part that has not started.
type Lifecycle struct {
	mu       sync.Mutex
	started  bool
	stopping bool
	stopped  chan struct{}
}

func (l *Lifecycle) init() {
	if l.stopped == nil {
		l.stopped = make(chan struct{})
	}
}

// BeginStart marks the part started; it returns ErrStarted when it was
// started or stopped before.
func (l *Lifecycle) BeginStart() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.init()
	if l.started || l.stopping {
		return ErrStarted
	}
	l.started = true
	return nil
}

// BeginStop marks the part stopping. first is true for the first call
// only; running says the part was started, so there is something to stop.
// A part stopped before it started is stopped at once.
func (l *Lifecycle) BeginStop() (first, running bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.init()
	first = !l.stopping
	l.stopping = true
	if !l.started && first {
		close(l.stopped)
	}
	return first, l.started
}

// Stopped says the part has stopped: every Wait returns.
func (l *Lifecycle) Stopped() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.init()
	select {
	case <-l.stopped:
	default:
		close(l.stopped)
	}
}

// Running reports whether the part was started and has not stopped yet.
func (l *Lifecycle) Running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.init()
	select {
	case <-l.stopped:
		return false
	default:
		return l.started
	}
}

// Stopping reports whether Stop was called.
func (l *Lifecycle) Stopping() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopping
}

// Done is closed once the part has stopped.
func (l *Lifecycle) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.init()
	return l.stopped
}

// Wait waits until the part has stopped, or ctx is done (then it returns
// ctx's error).
func (l *Lifecycle) Wait(ctx context.Context) error {
	select {
	case <-l.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
