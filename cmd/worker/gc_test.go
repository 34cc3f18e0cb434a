package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestGCPercentFor(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		name        string
		live, roots uint64
		want        int
	}{
		{name: "nothing yet: the most", want: maxGCPercent},
		{name: "tiny heap: capped", live: 100 << 10, roots: 100 << 10, want: maxGCPercent},
		{name: "small heap: goal at the floor", live: 3 * mib, roots: 9 * mib / 2, want: 200},
		{name: "rounded down to 25", live: 2 * mib, roots: 9 * mib / 2, want: 225},
		{name: "1,000 handlers' stacks, little heap: goal at the floor", live: 1 * mib, roots: 176 * mib / 10, want: 75},
		{name: "large stacks: loaded", live: 4 * mib, roots: 60 * mib, want: loadedGCPercent},
		{name: "large heap: loaded", live: 200 * mib, roots: 4 * mib, want: loadedGCPercent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := gcPercentFor(tt.live, tt.roots, 18*mib); got != tt.want {
				t.Errorf("gcPercentFor(live %d KiB, roots %d KiB) = %d, want %d", tt.live>>10, tt.roots>>10, got, tt.want)
			}
		})
	}
}

// skipWhenGOGCSet skips a test of the tuner, which leaves a GOGC set in
// the environment alone.
func skipWhenGOGCSet(t *testing.T) {
	t.Helper()
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set: tuneGC leaves it alone")
	}
}

// read is the runtime metric name's value.
func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestTuneGCAfterCollections: the tuner sets GOGC at start and again
// after the collections that find the live heap changed, and once stopped
// sets the base and leaves GOGC alone.
func TestTuneGCAfterCollections(t *testing.T) {
	skipWhenGOGCSet(t)
	gogc := func() int { return int(read("/gc/gogc:percent")) }
	defer debug.SetGCPercent(debug.SetGCPercent(baseGCPercent))
	runtime.GC()
	// The floor 64 MiB above what this test binary holds already.
	floor := read("/gc/heap/live:bytes") + 64<<20
	stop := tuneGC(floor, 0)
	if got := gogc(); got <= loadedGCPercent {
		t.Errorf("GOGC at start, 64 MiB below the floor = %d, want more than %d", got, loadedGCPercent)
	}
	// Past the floor by more than what the live heap at start may have held
	// only for a moment (other tests' servers), so that the goal is loaded.
	live := make([]byte, 80<<20)
	testkit.Eventually(t, 10*time.Second, "GOGC lowered after a collection", func() bool {
		runtime.GC()
		return gogc() == loadedGCPercent
	})
	runtime.KeepAlive(live)
	stop()
	if got := gogc(); got != baseGCPercent {
		t.Errorf("GOGC after stop = %d, want %d", got, baseGCPercent)
	}
	const someoneElses = 77
	debug.SetGCPercent(someoneElses)
	for range 3 {
		runtime.GC() // the 80 MiB are garbage now: a tuner would raise GOGC
	}
	// Cleanups run on goroutines of their own: wait for one queued after
	// any the tuner could have left.
	ran := make(chan struct{})
	runtime.AddCleanup(&gcCycle{}, func(ch chan struct{}) { close(ch) }, ran)
	testkit.Eventually(t, 10*time.Second, "a cleanup queued after the collections", func() bool {
		runtime.GC()
		select {
		case <-ran:
			return true
		default:
			return false
		}
	})
	if got := gogc(); got != someoneElses {
		t.Errorf("GOGC after stop and collections = %d, want %d as set: the tuner still runs", got, someoneElses)
	}
}

// TestTuneGCGoalAtTheFloor: below the floor, the tuner puts the runtime's
// heap goal at the floor (within one rounding step), counting the roots
// as the collector does: the stacks and globals it scanned.
func TestTuneGCGoalAtTheFloor(t *testing.T) {
	skipWhenGOGCSet(t)
	defer debug.SetGCPercent(debug.SetGCPercent(baseGCPercent))
	// A live heap large enough that the runtime's least goal (4 MiB ×
	// GOGC/100) is not the one it takes.
	held := make([]byte, 32<<20)
	runtime.GC()
	live := read("/gc/heap/live:bytes")
	base := live + read("/gc/scan/stack:bytes") + read("/gc/scan/globals:bytes")
	floor := live + 3*base // GOGC 300
	stop := tuneGC(floor, 0)
	defer stop()
	goal, step := read("/gc/heap/goal:bytes"), base/4
	if goal+step < floor || goal > floor+step {
		t.Errorf("heap goal %d KiB, want the floor %d KiB within %d KiB", goal>>10, floor>>10, step>>10)
	}
	runtime.KeepAlive(held)
}
