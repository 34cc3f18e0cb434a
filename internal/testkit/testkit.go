// Package testkit holds the small helpers the unit tests of several
// packages share: reading a collector's value and polling with a deadline.
package testkit

import (
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
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
