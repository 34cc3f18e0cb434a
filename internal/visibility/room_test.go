package visibility

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRoomAcquire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		limit     int
		want      []int // successive Acquires, none of which blocks
		wantGot   []int
		wantInUse int
	}{
		{name: "within the limit", limit: 16, want: []int{10, 6}, wantGot: []int{10, 6}, wantInUse: 16},
		{name: "capped at the limit", limit: 4, want: []int{10}, wantGot: []int{4}, wantInUse: 4},
		{name: "zero", limit: 5, want: []int{0, 5}, wantGot: []int{0, 5}, wantInUse: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newRoom(tt.limit)
			for i, w := range tt.want {
				got, err := l.Acquire(t.Context(), w)
				if err != nil || got != tt.wantGot[i] {
					t.Errorf("Acquire(%d) = %d, %v; want %d, nil", w, got, err, tt.wantGot[i])
				}
			}
			if got := l.InUse(); got != tt.wantInUse {
				t.Errorf("InUse() = %d; want %d", got, tt.wantInUse)
			}
		})
	}
}

func TestRoomAcquireWaitsForRoom(t *testing.T) {
	t.Parallel()
	l := newRoom(10)
	if _, err := l.Acquire(t.Context(), 8); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	got := make(chan result, 1)
	go func() {
		n, err := l.Acquire(context.Background(), 5)
		got <- result{n, err}
	}()

	l.Release(2) // 4 free: not enough for 5
	l.Release(0) // no-ops
	l.Release(-3)
	select {
	case r := <-got:
		t.Fatalf("Acquire(5) returned %v with 4 free", r)
	default:
	}
	if got := l.InUse(); got != 6 {
		t.Errorf("InUse() = %d; want 6", got)
	}

	l.Release(1) // 5 free
	select {
	case r := <-got:
		if r.err != nil || r.n != 5 {
			t.Errorf("Acquire(5) = %d, %v; want 5, nil", r.n, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire(5) still waiting with 5 free")
	}
	if got := l.InUse(); got != 10 {
		t.Errorf("InUse() = %d; want 10", got)
	}
}

func TestRoomAcquireCancelled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cancel func(context.CancelFunc)
	}{
		{name: "cancelled before", cancel: func(cancel context.CancelFunc) { cancel() }},
		{name: "cancelled while waiting", cancel: func(context.CancelFunc) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newRoom(3)
			if _, err := l.Acquire(t.Context(), 3); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tt.cancel(cancel)
			errc := make(chan error, 1)
			go func() {
				n, err := l.Acquire(ctx, 1)
				if n != 0 {
					err = errors.New("took room though cancelled")
				}
				errc <- err
			}()
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Acquire = %v; want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Acquire did not return after its context was cancelled")
			}
			if got := l.InUse(); got != 3 {
				t.Errorf("InUse() = %d; want 3: a cancelled Acquire takes nothing", got)
			}
		})
	}
}

func TestRoomConcurrent(t *testing.T) {
	t.Parallel()
	const limit = 10
	l := newRoom(limit)
	var held atomic.Int64
	var over atomic.Bool
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				n, err := l.Acquire(context.Background(), 3)
				if err != nil {
					t.Error(err)
					return
				}
				if held.Add(int64(n)) > limit {
					over.Store(true)
				}
				held.Add(-int64(n))
				l.Release(n)
			}
		})
	}
	wg.Wait()
	if over.Load() {
		t.Errorf("more than %d units held at once", limit)
	}
	if got := l.InUse(); got != 0 {
		t.Errorf("InUse() = %d after every unit was released; want 0", got)
	}
}
