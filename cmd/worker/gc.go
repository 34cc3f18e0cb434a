package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
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
// would be headroom. At 25 the footprint with 1,000 in flight was about
// 4 MiB smaller than at 50, and at 20 about 1 MiB smaller again, for more
// frequent collections of a heap that is mostly live (a CPU cost the
// footprint bench could not tell from its run-to-run spread).
const loadedGCPercent = 20

// maxGCPercent bounds the GOGC tuneGC sets for a nearly empty heap.
const maxGCPercent = 500

// tuneGC keeps the heap goal at no less than floor until stop is called:
// after every collection (when the live heap it is computed from changes)
// it sets GOGC to what makes the goal floor, or to loadedGCPercent when
// the goal at that is higher. It counts the stacks as at least minRoots,
// what the worker's handlers will need once they all run, so that a burst
// of them does not find a goal set for an idle worker. It runs only when
// the collector has: an idle worker, which allocates almost nothing,
// spends nothing on it. GOGC set in the environment wins: then it does
// nothing.
func tuneGC(floor, minRoots uint64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	t := &gcTuner{floor: floor, minRoots: minRoots, percent: -1, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	t.mu.Lock()
	t.tune()
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.stopped = true
		debug.SetGCPercent(baseGCPercent)
	}
}

// gcTuner is tuneGC's state between collections.
type gcTuner struct {
	floor, minRoots uint64
	mu              sync.Mutex // held by tune and by stop
	samples         []metrics.Sample
	percent         int
	stopped         bool
}

// gcCycle is allocated for one collection to reclaim: its cleanup is the
// tuner's next turn. It holds a pointer so that it is not packed with
// other small objects, whose lives would be its own.
type gcCycle struct{ _ *byte }

// tune sets GOGC from the last collection's figures and asks to run again
// after the next one. t.mu is held.
func (t *gcTuner) tune() {
	if t.stopped {
		return
	}
	metrics.Read(t.samples)
	var v [3]uint64
	for i, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	if p := gcPercentFor(v[0], max(v[1]+v[2], t.minRoots), t.floor); p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	runtime.AddCleanup(&gcCycle{}, func(t *gcTuner) {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.tune()
	}, t)
}

// gcPercentFor is the GOGC whose heap goal is floor, never below
// loadedGCPercent and at most maxGCPercent, rounded down to a multiple of
// 25 so that small changes change nothing. The runtime's goal is live + (live + roots) ×
// GOGC/100, where roots are the goroutine stacks and the globals the last
// collection scanned (not the memory the stacks take, often several times
// that, which would set the goal well below floor).
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
