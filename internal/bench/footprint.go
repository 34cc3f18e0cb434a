package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// footprintBudgetMiB is the most resident memory the worker binary may
// take beside the application it serves, with 1,000 messages in flight.
const footprintBudgetMiB = 62

// footprint measures the worker binary's footprint with 1,000 messages of 1 KiB
// in flight: the HTTP handler holds each for FootprintHold.
func (e *env) footprint(ctx context.Context) error {
	n := e.opts.count(10000, 20)
	inFlight := min(1000, n)
	bodies := indexBodies(n)
	for i, b := range bodies {
		bodies[i] = b + ":" + strings.Repeat("x", 1024-len(b)-1)
	}
	q, err := e.fill(ctx, "footprint", sqstest.QueueOptions{}, bodies)
	if err != nil {
		return err
	}
	fetchers := e.fetchersFor(float64(inFlight) / e.opts.FootprintHold.Seconds())
	e.progress("%s: worker binary, %d messages of 1 KiB, %d in flight (handler holds each %s), %d fetchers", scenarioFootprint, n, inFlight, e.opts.FootprintHold, fetchers)
	run, err := e.runBinary(ctx, q.URL, n, e.opts.FootprintHold,
		[]string{"go_goroutines", "go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes"},
		"--concurrency", strconv.Itoa(inFlight), "--prefetch", "0", "--fetchers", strconv.Itoa(fetchers))
	if err != nil {
		return err
	}
	peak, last, took, rss := run.peaks, run.last, run.took, run.rss
	e.note("%s reads the worker process's VmHWM (/proc/PID/status) and utime+stime (/proc/PID/stat, USER_HZ 100) "+
		"from \"worker started\" until the last delete; the HTTP handler runs in a process of its own.", scenarioFootprint)
	setting := fmt.Sprintf("%s msgs of 1 KiB, concurrency %d, prefetch 0, %d fetchers, handler holds %s",
		thousands(float64(n)), inFlight, fetchers, e.opts.FootprintHold)
	e.add(scenarioFootprint, "peak RSS of the worker binary (VmHWM)", rss, "MiB", atMost(footprintBudgetMiB),
		fmt.Sprintf("budget %d MiB beside the application it serves", footprintBudgetMiB), footprintBudgetMiB,
		fmt.Sprintf("%d in flight at the handler at peak (target %d); at most %.0f goroutines, %.1f MiB of stacks, %.1f MiB of heap in use; %s",
			run.handler.Peak, inFlight, peak["go_goroutines"],
			peak["go_memstats_stack_inuse_bytes"]/(1<<20), peak["go_memstats_heap_inuse_bytes"]/(1<<20), setting))
	per10k := func(cpuSeconds float64) float64 { return cpuSeconds / float64(n) * 10000 }
	available := float64(runtime.NumCPU()) * took.Seconds()
	e.add(scenarioFootprint, "CPU seconds per 10,000 messages (utime+stime)", per10k(run.workerCPU), "s", nil,
		fmt.Sprintf("all %d CPUs over the run's %.1f s: %.1f s per 10,000 (the worker used %.2f of %.1f CPU s; %s)",
			runtime.NumCPU(), took.Seconds(), per10k(available), run.workerCPU, available, format(float64(n)/took.Seconds(), "msg/s")),
		per10k(available), fmt.Sprintf("%.0f received for %d messages, %.0f failed SQS request attempts", last.Value("sqsworker_messages_received_total"), n,
			last.Value("sqsworker_sqs_requests_total", "outcome", "error")+last.Value("sqsworker_sqs_requests_total", "outcome", "throttled")))
	return nil
}
