// Package testkit holds the small helpers the tests of several packages
// share: the TestMain wrapper with its leak check, reading a collector's
// value, polling with a deadline, a fake clock.
package testkit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sqsworker/sqsworker/internal/sqstest"
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

// Eventually polls cond until it holds, failing the test after within:
// first after a millisecond, then at doubling intervals up to 50ms, so a
// unit test sees a quick condition quickly and an end-to-end test, whose
// conditions cost a request each, asks at most 20 times a second.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := sqstest.Poll(context.Background(), within, 50*time.Millisecond, what, cond); err != nil {
		t.Fatal(err)
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

// StartServer is a WrapTestMain set-up that starts the local SQS server
// for the whole test binary and stores it in *dst.
func StartServer(dst **sqstest.Server) func() (func(), error) {
	return func() (func(), error) {
		s, err := sqstest.Start()
		if err != nil {
			return nil, err
		}
		*dst = s
		return s.Stop, nil
	}
}
