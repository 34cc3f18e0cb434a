package bench

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// handlerTime is message i's handler time: lognormal with median 50ms and
// σ = 1, drawn from its own seeded stream, so it does not depend on the
// order in which messages arrive.
func handlerTime(seed uint64, i int) time.Duration {
	z := rand.New(rand.NewPCG(seed, uint64(i))).NormFloat64()
	return time.Duration(float64(50*time.Millisecond) * math.Exp(z))
}

// simulation is what a zero-overhead consumer with `slots` handlers does
// with durations taken in order: each message starts the moment a slot is
// free.
type simulation struct {
	makespan time.Duration
	// steadyRate is its completions per second between its own 10% and
	// 90% completion marks.
	steadyRate float64
}

func simulate(durations []time.Duration, slots int) simulation {
	free := make(durationHeap, min(slots, len(durations)))
	ends := make([]time.Duration, len(durations))
	for i, d := range durations {
		t := free[0]
		ends[i] = t + d
		free[0] = ends[i]
		heap.Fix(&free, 0)
	}
	slices.Sort(ends)
	n := len(ends)
	s := simulation{makespan: ends[n-1]}
	lo, hi := n/10, max(n*9/10-1, n/10)
	if w := ends[hi] - ends[lo]; w > 0 {
		s.steadyRate = float64(hi-lo) / w.Seconds()
	}
	return s
}

type durationHeap []time.Duration

func (h durationHeap) Len() int           { return len(h) }
func (h durationHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h durationHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *durationHeap) Push(x any)        { *h = append(*h, x.(time.Duration)) }
func (h *durationHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// longTail runs handlers of seeded lognormal time at concurrency 200 and compares
// the worker with the zero-overhead ceiling on exactly those times.
func (e *env) longTail(ctx context.Context) error {
	n := e.opts.count(20000, 20)
	slots := e.opts.LongTailConcurrency
	durations := make([]time.Duration, n)
	var total time.Duration
	for i := range durations {
		durations[i] = handlerTime(e.opts.Seed, i)
		total += durations[i]
	}
	sim := simulate(durations, slots)
	ceiling := float64(n) / sim.makespan.Seconds()
	fetchers := e.opts.LongTailFetchers
	if fetchers <= 0 {
		fetchers = e.fetchersFor(float64(slots) / (total.Seconds() / float64(n)))
	}

	q, err := e.fill(ctx, "long-tail", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	// Handler busy intervals, by message index, in ns since t0.
	starts, ends := make([]atomic.Int64, n), make([]atomic.Int64, n)
	var runs atomic.Int64
	var t0 time.Time
	h := sqsworker.HandlerFunc(func(ctx context.Context, msg *sqsworker.Message) error {
		i, err := strconv.Atoi(msg.Body)
		if err != nil || i < 0 || i >= n {
			return fmt.Errorf("unexpected body %q", msg.Body)
		}
		runs.Add(1)
		starts[i].Store(int64(time.Since(t0)))
		t := time.NewTimer(durations[i])
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		ends[i].Store(int64(time.Since(t0)))
		return nil
	})
	stopProf, err := e.prof.start(scenarioLongTail)
	if err != nil {
		return err
	}
	e.progress("%s: %d messages, lognormal handler times (median 50ms, σ=1), concurrency %d, %d fetchers", scenarioLongTail, n, slots, fetchers)
	t0 = time.Now()
	w, err := e.startWorker(ctx, q.URL, h, func(c *sqsworker.Config) {
		c.Concurrency, c.Fetchers = slots, fetchers
	})
	if err != nil {
		return err
	}
	// The 10% and 90% delete marks, in ns since t0.
	marks := []float64{0.1 * float64(n), 0.9 * float64(n), float64(n)}
	at := make([]time.Duration, len(marks))
	next := 0
	err = sqstest.Poll(ctx, 10*time.Minute, time.Millisecond, "every delete", func() bool {
		d := w.deleted()
		for next < len(marks) && d >= marks[next] {
			at[next] = time.Since(t0)
			next++
		}
		return next == len(marks)
	})
	reqs := w.requests()
	if err := firstErr(err, w.stop, stopProf); err != nil {
		return err
	}

	e.note("%s's steady utilization is busy handler-seconds between the 10%% and 90%% delete marks ÷ (concurrency × that window); "+
		"the row also gives msg/s in the window ÷ the simulated consumer's own 10%%–90%% rate.", scenarioLongTail)
	rate := float64(n) / at[2].Seconds()
	t10, t90 := at[0], at[1]
	busy := time.Duration(0)
	for i := range n {
		s, f := time.Duration(starts[i].Load()), time.Duration(ends[i].Load())
		if f <= s {
			continue
		}
		if lo, hi := max(s, t10), min(f, t90); hi > lo {
			busy += hi - lo
		}
	}
	window := t90 - t10
	steady, windowRate := 0.0, 0.0
	if window > 0 {
		steady = busy.Seconds() / (float64(slots) * window.Seconds())
		windowRate = (marks[1] - marks[0]) / window.Seconds()
	}
	perMsg := sum(reqs) / float64(n)
	setting := fmt.Sprintf("%s msgs, concurrency %d, %d fetchers, seed %d", thousands(float64(n)), slots, fetchers, e.opts.Seed)
	e.add(scenarioLongTail, "throughput ÷ zero-overhead ceiling", rate/ceiling, "ratio", atLeast(0.97),
		fmt.Sprintf("ceiling %s (%d slots over the same handler times; makespan %.2f s)", format(ceiling, "msg/s"), slots, sim.makespan.Seconds()),
		ceiling, fmt.Sprintf("worker %s in %.2f s; %s", format(rate, "msg/s"), at[2].Seconds(), setting))
	e.add(scenarioLongTail, "steady utilization, 10%–90% of deletes (busy handler-s ÷ slots × wall)", steady, "ratio", atLeast(0.95),
		"1.000 (every slot busy)", 1,
		fmt.Sprintf("window %.2f s; msg/s in window ÷ simulated steady rate = %s ÷ %s = %.3f",
			window.Seconds(), thousands(windowRate), thousands(sim.steadyRate), windowRate/sim.steadyRate))
	e.add(scenarioLongTail, "SQS requests per message", perMsg, "req/msg", atMost(0.21), "floor 0.200", 0.2,
		fmt.Sprintf("%s; %d handler runs for %d messages", breakdown(reqs, n), runs.Load(), n))
	if e.opts.RTT > 0 {
		limit := float64(fetchers) * 10 / e.opts.RTT.Seconds()
		e.add(scenarioLongTail, "msg/s beside fetchers × 10 ÷ RTT", rate, "msg/s", nil,
			fmt.Sprintf("%d × 10 ÷ %s = %s; ceiling %s", fetchers, e.opts.RTT, format(limit, "msg/s"), format(ceiling, "msg/s")),
			limit, setting)
	}
	return nil
}
