package visibility

import (
	"context"
	"sync"
)

// room is the in-flight limit: room for leases, taken before a receive
// and given back when a lease ends. Fetching only what there is room for
// means the worker never holds more leases than it can keep alive.
type room struct {
	mu    sync.Mutex
	free  int
	limit int
	wake  chan struct{} // closed and replaced when room is given back to waiters
	// waiting says someone waits on wake: a Release with no one waiting
	// need not allocate a new channel (one per handled message otherwise).
	waiting bool
}

// newRoom returns a room with room for limit leases.
func newRoom(limit int) *room {
	return &room{free: limit, limit: limit, wake: make(chan struct{})}
}

// Acquire waits until want units are free (want is capped at the limit),
// takes them, and returns how many it took. It returns ctx's error if ctx
// is done first.
func (l *room) Acquire(ctx context.Context, want int) (int, error) {
	want = min(want, l.limit)
	for {
		l.mu.Lock()
		if l.free >= want {
			l.free -= want
			l.mu.Unlock()
			return want, nil
		}
		wake := l.wake
		l.waiting = true
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Release gives back n units.
func (l *room) Release(n int) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	l.free += n
	if l.waiting {
		close(l.wake)
		l.wake = make(chan struct{})
		l.waiting = false
	}
	l.mu.Unlock()
}

// InUse is the number of units taken.
func (l *room) InUse() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit - l.free
}
