// Package backoff has the small timing helpers every retry loop shares.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter returns a duration in [d/2, d): spread out so that many workers
// backing off from the same fault do not come back at once.
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(half) //nolint:gosec // jitter needs no crypto
}

// Sleep waits d or until ctx is done; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Exponential returns min·2^(n-1), capped at max; n counts from 1.
func Exponential(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}
