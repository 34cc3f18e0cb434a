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
// third of the worker's CPU went to the collector.
const gcHeapFloor = 18 << 20

// handlerStackBytes is what one handler slot costs in goroutine stacks
// under load: its own goroutine and the HTTP connection's two, about
// 6 KiB each.
const handlerStackBytes = 3 * 6 << 10

// baseGCPercent is the GOGC every subcommand starts at: the live heap is
// small (leases, buffers of requests in flight) and a worker runs beside
// the application it serves, so it collects at 1.5× it rather than 2×.
const baseGCPercent = 50

// loadedGCPercent is the GOGC `worker run` collects at once the floor is
// not enough: many handlers in flight. The runtime counts goroutine
// stacks in the goal, and there they are as large as the heap (1,000 in
// flight: 17 MiB of each), so at the base GOGC half of the stacks again
// would be headroom. At 25 the footprint with 1,000 in flight is about
// 4 MiB smaller, for more frequent collections of a heap that is mostly
// live.
const loadedGCPercent = 25

// maxGCPercent bounds the GOGC tuneGC sets for a nearly empty heap.
const maxGCPercent = 500

// gcTunePeriod is how often tuneGC looks again: the live heap changes at
// collections, the stacks whenever goroutines come and go (a burst of
// handlers must not find the goal set for the few there were before).
const gcTunePeriod = 20 * time.Millisecond

// tuneGC keeps the heap goal at no less than floor until stop is called:
// every gcTunePeriod it sets GOGC to what makes the goal floor, or to
// loadedGCPercent when the goal at that is higher. It counts the stacks as at least
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
		percent := -1
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
// loadedGCPercent and at most maxGCPercent, rounded down to a multiple of
// 25 so that small changes change nothing. The runtime's goal is live + (live + roots) ×
// GOGC/100, where roots are the goroutine stacks and the globals.
func gcPercentFor(live, roots, floor uint64) int {
	if live >= floor {
		return loadedGCPercent
	}
	base := live + roots
	if base == 0 {
		return maxGCPercent
	}
	p := int((floor - live) * 100 / base)
	return min(max(loadedGCPercent, p/25*25), maxGCPercent)
}
