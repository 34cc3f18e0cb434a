package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// gcHeapFloor is the heap `worker run` lets grow to before it collects.
// At the base GOGC a small live heap (a few MiB at concurrency 200) is
// collected every few MiB allocated, and each collection scans every
// goroutine's stack (hundreds: handlers, HTTP connections, polls): a
// third of the worker's CPU went to the collector. Under load the goal at
// the base is above the floor already (with 1,000 messages in flight the
// goroutine stacks alone are 17 MiB), so the footprint there does not
// grow.
const gcHeapFloor = 18 << 20

// handlerStackBytes is what one handler slot costs in goroutine stacks
// under load: its own goroutine and the HTTP connection's two, about
// 6 KiB each.
const handlerStackBytes = 3 * 6 << 10

// baseGCPercent is the GOGC the binary runs at once its heap is above
// the floor: the live heap is small (leases, buffers of in-flight
// requests) and a worker runs beside the application it serves, so it
// collects at 1.5× it rather than 2×.
const baseGCPercent = 50

// maxGCPercent bounds the GOGC tuneGC sets for a nearly empty heap.
const maxGCPercent = 500

// gcTunePeriod is how often tuneGC looks again: the live heap changes at
// collections, the stacks whenever goroutines come and go (a burst of
// handlers must not find the goal set for the few there were before).
const gcTunePeriod = 20 * time.Millisecond

// tuneGC keeps the heap goal at no less than floor until stop is called:
// every gcTunePeriod it sets GOGC to what makes the goal floor, or to
// baseGCPercent when the goal at that is higher. It counts the stacks as at least
// minRoots, what the worker's handlers will need once they all run, so
// that a burst of them does not find a goal set for an idle worker. GOGC
// set in the environment wins: then it does nothing.
func tuneGC(floor, minRoots uint64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	samples := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(gcTunePeriod)
		defer t.Stop()
		percent := baseGCPercent
		for {
			select {
			case <-done:
				debug.SetGCPercent(baseGCPercent)
				return
			case <-t.C:
			}
			metrics.Read(samples)
			var v [3]uint64
			for i, s := range samples {
				if s.Value.Kind() == metrics.KindUint64 {
					v[i] = s.Value.Uint64()
				}
			}
			if p := gcPercentFor(v[0], max(v[1]+v[2], minRoots), floor); p != percent {
				debug.SetGCPercent(p)
				percent = p
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// gcPercentFor is the GOGC whose heap goal is floor, never below
// baseGCPercent and at most maxGCPercent, rounded down to a multiple of 50 so that small
// changes change nothing. The runtime's goal is live + (live + roots) ×
// GOGC/100, where roots are the goroutine stacks and the globals.
func gcPercentFor(live, roots, floor uint64) int {
	if live >= floor {
		return baseGCPercent
	}
	base := live + roots
	if base == 0 {
		return maxGCPercent
	}
	p := int((floor - live) * 100 / base)
	return min(max(baseGCPercent, p/50*50), maxGCPercent)
}
