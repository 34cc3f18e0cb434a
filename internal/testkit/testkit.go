// Package testkit holds the small helpers the tests of several packages
// share: reading a collector's value, polling with a deadline, a fake clock.
package testkit

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value is the sum of c's counters and gauges over all label values.
// (prometheus/testutil would need a go.sum entry this module lacks.)
func Value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 128)
	go func() { c.Collect(ch); close(ch) }()
	sum := 0.0
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			panic(err)
		}
		switch {
		case pb.Counter != nil:
			sum += pb.Counter.GetValue()
		case pb.Gauge != nil:
			sum += pb.Gauge.GetValue()
		}
	}
	return sum
}

// WaitFor polls cond every millisecond until it holds, failing the test
// after 10 seconds.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll(t, 10*time.Second, time.Millisecond, cond, func() { t.Fatalf("timed out waiting for %s", what) })
}

// Eventually polls cond every 50ms until it holds, failing the test after
// within: for end-to-end tests, whose conditions cost a request each.
func Eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	poll(t, within, 50*time.Millisecond, cond, func() { t.Fatalf("timed out after %s waiting for %s", within, what) })
}

func poll(t *testing.T, within, every time.Duration, cond func() bool, fail func()) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			fail()
			return
		case <-tick.C:
		}
	}
}

// Clock is a settable fake clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to now.
func (c *Clock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
