package sqstest

import (
	"context"
	"fmt"
	"time"
)

// firstPoll is the wait before Poll's second look; each later wait doubles,
// up to Poll's every.
const firstPoll = time.Millisecond

// Poll calls cond until it returns true: at once, then after 1ms, doubling
// the wait up to every, so that a quick condition is seen quickly and a slow
// one costs a look per every. It returns an error naming what once within
// has passed, or ctx's error once ctx is done. It is the one polling loop of
// the tests, the benchmarks and the demo.
func Poll(ctx context.Context, within, every time.Duration, what string, cond func() bool) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	wait := min(firstPoll, every)
	next := time.NewTimer(wait)
	defer next.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("timed out after %s waiting for %s", within, what)
		case <-next.C:
		}
		wait = min(2*wait, every)
		next.Reset(wait)
	}
	return nil
}
