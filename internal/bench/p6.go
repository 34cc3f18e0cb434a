package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// binaryP1 runs P1/P2 through the worker binary with an HTTP no-op
// handler served here, to show its requests per message match the
// in-process run's. Its msg/s is lower: every message also crosses HTTP.
func (e *env) binaryP1(ctx context.Context) error {
	n := e.p1Messages()
	q, err := e.fill(ctx, "bin", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	s, err := startSink(0, n)
	if err != nil {
		return err
	}
	defer func() { _ = s.close() }()
	e.progress("BIN: worker binary consumes %d messages (HTTP no-op handler)", n)
	p, err := e.startBinary(ctx, "--queue-url", q.URL, "--handler", "http", "--http-url", s.URL,
		"--concurrency", strconv.Itoa(e.opts.Concurrency), "--fetchers", strconv.Itoa(e.opts.Fetchers))
	if err != nil {
		return err
	}
	t0 := time.Now()
	err = waitClosed(ctx, s.all, 10*time.Minute, "every message posted to the handler")
	var m sqstest.Metrics
	if err == nil {
		m, err = p.waitDeleted(ctx, n)
	}
	took := time.Since(t0)
	if serr := p.stop(e.opts.WaitTime + time.Minute); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	rate := float64(n) / took.Seconds()
	total := m.Value("sqsworker_sqs_requests_total")
	perMsg := total / float64(n)
	reqs := map[string]float64{}
	for _, a := range []string{"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch", "GetQueueAttributes"} {
		reqs[a] = m.Value("sqsworker_sqs_requests_total", "action", a)
	}
	reqs["other"] = total - sum(reqs)
	setting := fmt.Sprintf("%s msgs, %d fetchers, concurrency %d", thousands(float64(n)), e.opts.Fetchers, e.opts.Concurrency)
	limit, limitValue := "in-process P2 not run", 0.0
	if e.p1res.perMsg > 0 {
		limit, limitValue = fmt.Sprintf("in-process P2 %.3f (difference %+.3f)", e.p1res.perMsg, perMsg-e.p1res.perMsg), e.p1res.perMsg
	}
	e.add("BIN", "binary, HTTP no-op handler: SQS requests per message", perMsg, "req/msg", atMost(0.21),
		limit, limitValue, fmt.Sprintf("%s; %s", breakdown(reqs, n), setting))
	limit, limitValue = "in-process P1 not run", 0
	if e.p1res.rate > 0 {
		limit, limitValue = fmt.Sprintf("in-process P1 %s; raw loop %s", format(e.p1res.rate, "msg/s"), format(e.p1res.rawRate, "msg/s")), e.p1res.rate
	}
	e.add("BIN", "binary, HTTP no-op handler: msg/s (lower: each message also crosses HTTP)", rate, "msg/s", nil,
		limit, limitValue, setting)
	return nil
}

// p6 measures the worker binary's footprint with 1,000 messages of 1 KiB
// in flight: the HTTP handler holds each for P6Hold.
func (e *env) p6(ctx context.Context) error {
	n := e.opts.count(10000, 20)
	inFlight := min(1000, n)
	bodies := indexBodies(n)
	for i, b := range bodies {
		bodies[i] = b + ":" + strings.Repeat("x", 1024-len(b)-1)
	}
	q, err := e.fill(ctx, "p6", sqstest.QueueOptions{}, bodies)
	if err != nil {
		return err
	}
	s, err := startSink(e.opts.P6Hold, n)
	if err != nil {
		return err
	}
	defer func() { _ = s.close() }()
	fetchers := e.fetchersFor(float64(inFlight) / e.opts.P6Hold.Seconds())
	e.progress("P6: worker binary, %d messages of 1 KiB, %d in flight (handler holds each %s), %d fetchers", n, inFlight, e.opts.P6Hold, fetchers)
	p, err := e.startBinary(ctx, "--queue-url", q.URL, "--handler", "http", "--http-url", s.URL,
		"--concurrency", strconv.Itoa(inFlight), "--prefetch", "0", "--fetchers", strconv.Itoa(fetchers))
	if err != nil {
		return err
	}
	pid := p.PID()
	t0 := time.Now()
	cpu0, err := cpuSeconds(pid)
	peaks := p.watchPeaks(ctx, 250*time.Millisecond, "go_goroutines", "go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes")
	if err == nil {
		err = waitClosed(ctx, s.all, 10*time.Minute, "every message posted to the handler")
	}
	peak := peaks()
	var last sqstest.Metrics
	if err == nil {
		last, err = p.waitDeleted(ctx, n)
	}
	took := time.Since(t0)
	var cpu1, rss float64
	if err == nil {
		cpu1, err = cpuSeconds(pid)
	}
	if err == nil {
		rss, err = peakRSS(pid)
	}
	if serr := p.stop(e.opts.WaitTime + time.Minute); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	e.note("P6 reads the worker process's VmHWM (/proc/PID/status) and utime+stime (/proc/PID/stat, USER_HZ 100) " +
		"from \"worker started\" until the last delete; the HTTP handler runs in sqsbench, not in the worker.")
	setting := fmt.Sprintf("%s msgs of 1 KiB, concurrency %d, prefetch 0, %d fetchers, handler holds %s",
		thousands(float64(n)), inFlight, fetchers, e.opts.P6Hold)
	e.add("P6", "peak RSS of the worker binary (VmHWM)", rss, "MiB", atMost(64),
		fmt.Sprintf("%d in flight at the handler at peak (target %d)", s.peak.Load(), inFlight), float64(s.peak.Load()),
		fmt.Sprintf("at most %.0f goroutines, %.1f MiB of stacks, %.1f MiB of heap in use; %s", peak["go_goroutines"],
			peak["go_memstats_stack_inuse_bytes"]/(1<<20), peak["go_memstats_heap_inuse_bytes"]/(1<<20), setting))
	e.add("P6", "CPU seconds per 10,000 messages (utime+stime)", (cpu1-cpu0)/float64(n)*10000, "s", nil,
		fmt.Sprintf("%.2f CPU s over %.1f s wall (%s)", cpu1-cpu0, took.Seconds(), format(float64(n)/took.Seconds(), "msg/s")),
		cpu1-cpu0, fmt.Sprintf("%.0f received for %d messages, %.0f failed SQS request attempts", last.Value("sqsworker_messages_received_total"), n,
			last.Value("sqsworker_sqs_requests_total", "outcome", "error")+last.Value("sqsworker_sqs_requests_total", "outcome", "throttled")))
	return nil
}
