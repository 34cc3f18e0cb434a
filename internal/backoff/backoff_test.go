package backoff

import (
	"context"
	"testing"
	"time"
)

func TestJitter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    time.Duration
	}{
		{name: "100ms", d: 100 * time.Millisecond},
		{name: "2ns", d: 2},
		{name: "15 minutes", d: 15 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 1000 {
				if got := Jitter(tt.d); got < tt.d/2 || got >= tt.d {
					t.Fatalf("Jitter(%v) = %v; want in [%v, %v)", tt.d, got, tt.d/2, tt.d)
				}
			}
		})
	}
}

func TestJitterTiny(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{-time.Second, 0, 1} {
		if got := Jitter(d); got != d {
			t.Errorf("Jitter(%v) = %v; want it unchanged", d, got)
		}
	}
}

func TestExponential(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		n    int
		want time.Duration
	}{
		{name: "zero counts as first", n: 0, want: time.Second},
		{name: "first", n: 1, want: time.Second},
		{name: "second", n: 2, want: 2 * time.Second},
		{name: "fifth", n: 5, want: 16 * time.Second},
		{name: "capped", n: 11, want: 15 * time.Minute},
		{name: "huge stays capped", n: 1 << 30, want: 15 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Exponential(tt.n, time.Second, 15*time.Minute); got != tt.want {
				t.Errorf("Exponential(%d, 1s, 15m) = %v; want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{name: "zero", ctx: context.Background(), want: true},
		{name: "negative", ctx: context.Background(), d: -time.Second, want: true},
		{name: "short", ctx: context.Background(), d: time.Millisecond, want: true},
		{name: "zero, cancelled", ctx: cancelled},
		// Returns at once: a test deadline would catch an hour's wait.
		{name: "long, cancelled", ctx: cancelled, d: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Sleep(tt.ctx, tt.d); got != tt.want {
				t.Errorf("Sleep(%v) = %v; want %v", tt.d, got, tt.want)
			}
		})
	}
}
