package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// handlerPackage is the no-op HTTP handler the worker binary posts to.
const handlerPackage = "github.com/sqsworker/sqsworker/internal/bench/noophandler"

// workerBinary builds ./cmd/worker once per run, unless one was given.
func (e *env) workerBinary(ctx context.Context) (string, error) {
	if e.opts.WorkerBinary != "" {
		return e.opts.WorkerBinary, nil
	}
	return e.build(ctx, "worker", sqstest.WorkerPackage, "-tags="+sqstest.WorkerTags)
}

// build builds the command pkg once per run, as name in the run's
// directory, passing flags to go build.
func (e *env) build(ctx context.Context, name, pkg string, flags ...string) (string, error) {
	if path, ok := e.built[pkg]; ok {
		return path, nil
	}
	path := filepath.Join(e.tmp, name)
	e.progress("building %s", pkg)
	if err := sqstest.Build(ctx, pkg, path, flags...); err != nil {
		return "", err
	}
	if e.built == nil {
		e.built = map[string]string{}
	}
	e.built[pkg] = path
	return path, nil
}

// proc is the worker binary running against the run's endpoint.
type proc struct{ *sqstest.Worker }

// startBinary runs `worker run` with args against the run's endpoint (the
// server's, or the latency proxy's) and waits for it to start.
func (e *env) startBinary(ctx context.Context, args ...string) (proc, error) {
	bin, err := e.workerBinary(ctx)
	if err != nil {
		return proc{}, err
	}
	w, err := e.srv.StartWorker(bin, sqstest.WorkerOptions{
		Args: append([]string{"--wait-time", e.opts.WaitTime.String()}, args...),
		Env:  []string{"AWS_ENDPOINT_URL_SQS=" + e.endpoint},
	})
	return proc{w}, err
}

// stop sends SIGTERM and waits for an exit with status 0.
func (p proc) stop(within time.Duration) error {
	code, err := p.Stop(syscall.SIGTERM, within)
	if err == nil && code != 0 {
		err = fmt.Errorf("worker exited with status %d: %s", code, p.LastLines(20))
	}
	return err
}

// waitDeleted polls the worker's metrics until n deletes are confirmed and
// returns the last scrape. Each scrape costs the worker CPU: wait for the
// handler first.
func (p proc) waitDeleted(ctx context.Context, n int) (sqstest.Metrics, error) {
	var last sqstest.Metrics
	var scrapeErr error
	err := sqstest.Poll(ctx, time.Minute, 5*time.Millisecond, fmt.Sprintf("%d deletes", n), func() bool {
		last, scrapeErr = p.Scrape(ctx)
		return scrapeErr != nil || last.Value("sqsworker_messages_deleted_total") >= float64(n)
	})
	return last, errors.Join(err, scrapeErr)
}

// binaryRun is what one run of the worker binary over n messages, with
// the no-op HTTP handler, measured.
type binaryRun struct {
	// took is from "worker started" to the n-th confirmed delete.
	took time.Duration
	// workerCPU and handlerCPU are each process's utime+stime over took,
	// in seconds.
	workerCPU, handlerCPU float64
	// rss is the worker's peak resident memory (VmHWM), in MiB.
	rss float64
	// last is the worker's metrics at the end, handler the handler's counts.
	last    sqstest.Metrics
	handler handlerStats
	// peaks are the largest values of the watched gauges.
	peaks map[string]float64
	// allocBytes and allocs are the worker's heap allocations over took
	// (go_memstats_alloc_bytes_total, go_memstats_mallocs_total).
	allocBytes, allocs float64
	// machine is the whole machine's CPU over took.
	machine machineTicks
}

// perMsg is seconds per message in µs.
func perMsg(seconds float64, n int) float64 { return seconds / float64(n) * 1e6 }

// runBinary runs the worker binary with args over queueURL's n messages,
// posting to a no-op handler process that holds each request for hold,
// until n deletes are confirmed; it scrapes the gauges named in watch
// every 250ms and keeps their peaks.
func (e *env) runBinary(ctx context.Context, queueURL string, n int, hold time.Duration, watch []string, args ...string) (binaryRun, error) {
	var r binaryRun
	h, err := e.startHandler(ctx, hold)
	if err != nil {
		return r, err
	}
	defer h.stop()
	p, err := e.startBinary(ctx, append([]string{"--queue-url", queueURL, "--handler", "http", "--http-url", h.URL}, args...)...)
	if err != nil {
		return r, err
	}
	first, err := p.Scrape(ctx)
	if err != nil {
		return r, errors.Join(err, p.stop(e.opts.WaitTime+time.Minute))
	}
	t0 := time.Now()
	m0 := readMachineTicks()
	w0, err1 := cpuSeconds(p.PID())
	h0, err2 := cpuSeconds(h.PID())
	err = errors.Join(err1, err2)
	peaks := p.watchPeaks(ctx, 250*time.Millisecond, watch...)
	if err == nil {
		err = sqstest.Poll(ctx, 10*time.Minute, 10*time.Millisecond, fmt.Sprintf("%d messages at the handler", n), func() bool {
			st, serr := h.stats(ctx)
			return serr != nil || st.Messages >= int64(n)
		})
	}
	if err == nil {
		r.last, err = p.waitDeleted(ctx, n)
		r.allocBytes = r.last.Value("go_memstats_alloc_bytes_total") - first.Value("go_memstats_alloc_bytes_total")
		r.allocs = r.last.Value("go_memstats_mallocs_total") - first.Value("go_memstats_mallocs_total")
	}
	r.took = time.Since(t0)
	r.peaks = peaks()
	if err == nil {
		var w1, h1 float64
		r.machine = readMachineTicks().sub(m0)
		w1, err1 = cpuSeconds(p.PID())
		h1, err2 = cpuSeconds(h.PID())
		r.workerCPU, r.handlerCPU = w1-w0, h1-h0
		r.rss, err = peakRSS(p.PID())
		err = errors.Join(err, err1, err2)
	}
	if err == nil {
		r.handler, err = h.stats(ctx)
	}
	if serr := p.stop(e.opts.WaitTime + time.Minute); err == nil {
		err = serr
	}
	return r, err
}

// binaryNoop runs noop-throughput's messages through the worker binary
// with the no-op HTTP handler, to show that its requests per message match
// the in-process worker's, and what it costs in CPU per message beside a
// raw SDK loop over as many messages. Its msg/s is lower than the
// in-process worker's: every message also crosses HTTP.
func (e *env) binaryNoop(ctx context.Context) error {
	n := e.throughputMessages()
	q, err := e.fill(ctx, "binary-noop", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	e.progress("%s: worker binary consumes %d messages (no-op HTTP handler in its own process)", scenarioBinary, n)
	run, err := e.runBinary(ctx, q.URL, n, 0, []string{"sqsworker_receive_polls"},
		"--concurrency", strconv.Itoa(e.opts.Concurrency), "--fetchers", strconv.Itoa(e.opts.Fetchers))
	if err != nil {
		return err
	}
	rq, err := e.fill(ctx, "binary-noop-raw", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	e.progress("%s: raw SDK loop consumes %d messages with %d goroutines", scenarioBinary, n, e.pinned())
	raw, err := e.rawLoop(ctx, rq.URL, e.pinned(), n)
	if err != nil {
		return err
	}

	m := run.last
	rate := float64(n) / run.took.Seconds()
	total := m.Value("sqsworker_sqs_requests_total")
	reqs := map[string]float64{}
	for _, a := range []string{"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch", "GetQueueAttributes"} {
		reqs[a] = m.Value("sqsworker_sqs_requests_total", "action", a)
	}
	reqs["other"] = total - sum(reqs)
	setting := fmt.Sprintf("%s msgs, %s, concurrency %d", thousands(float64(n)), e.fetchersSetting(), e.opts.Concurrency)
	limit := "floor 0.200 (one receive and one delete per 10)"

	limit += fmt.Sprintf("; raw loop %.3f", raw.requests/float64(n))
	e.add(scenarioBinary, "binary, HTTP no-op handler: SQS requests per message", total/float64(n), "req/msg", atMost(0.21),
		limit, 0.2, fmt.Sprintf("%s; %s", breakdown(reqs, n), setting))
	rawRate := float64(n) / raw.took.Seconds()
	limit = fmt.Sprintf("raw SDK loop %s (%d goroutines, same messages)", format(rawRate, "msg/s"), e.pinned())
	if e.noop.rate > 0 {
		limit += fmt.Sprintf("; in-process worker %s (%s)", format(e.noop.rate, "msg/s"), scenarioThroughput)
	}
	e.add(scenarioBinary, "binary, HTTP no-op handler: msg/s (lower: each message also crosses HTTP)", rate, "msg/s", nil,
		limit, rawRate, fmt.Sprintf("peak polls %.0f; %s", run.peaks["sqsworker_receive_polls"], setting))

	workerUS, handlerUS, rawUS := perMsg(run.workerCPU, n), perMsg(run.handlerCPU, n), perMsg(raw.cpu, n)
	rawWhere := "in sqsbench's process"
	if e.opts.RTT > 0 {
		rawWhere += ", with the in-process latency proxy"
	}
	e.add(scenarioBinary, "binary CPU per message, HTTP no-op handler (worker process utime+stime ÷ messages)", workerUS, "µs", atMost(cpuBudgetMicros),
		fmt.Sprintf("raw SDK loop %.0f µs/msg (%d goroutines, receive 10 with every attribute → delete batch, %s)", rawUS, e.pinned(), rawWhere), rawUS,
		fmt.Sprintf("%.2f CPU s for %s msgs at %s; %.1f KiB in %.0f allocations per message; the handler process's %.0f µs/msg not included",
			run.workerCPU, thousands(float64(n)), format(rate, "msg/s"), run.allocBytes/float64(n)/1024, run.allocs/float64(n), handlerUS))
	e.add(scenarioBinary, "CPU per message of the no-op HTTP handler process (not the worker's)", handlerUS, "µs", nil,
		"none: the application's side of each POST, in a process of its own", 0,
		fmt.Sprintf("%.2f CPU s for %d requests", run.handlerCPU, run.handler.Handled))
	return nil
}

// cpuBudgetMicros is the most CPU time the worker binary may spend per
// message with a no-op HTTP handler.
const cpuBudgetMicros = 125

// watchPeaks scrapes the worker every interval and keeps the largest
// value of each named gauge; the returned func stops it and returns them.
// With no names it does not scrape: a scrape costs the worker CPU that
// the run would count as its own.
func (p proc) watchPeaks(ctx context.Context, interval time.Duration, names ...string) func() map[string]float64 {
	peaks := map[string]float64{}
	if len(names) == 0 {
		return func() map[string]float64 { return peaks }
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			m, err := p.Scrape(ctx)
			if err != nil {
				continue
			}
			for _, n := range names {
				peaks[n] = max(peaks[n], m.Value(n))
			}
		}
	}()
	return func() map[string]float64 {
		close(stop)
		<-done
		return peaks
	}
}

// handlerProc is the no-op HTTP handler the worker binary posts to, in
// a process of its own, so that its CPU time is not the worker's (nor
// sqsbench's).
type handlerProc struct {
	*sqstest.Process
	// URL is where it takes POSTs: http://127.0.0.1:PORT/.
	URL string
}

// handlerStats is what the handler answers at GET /stats.
type handlerStats struct {
	Handled  int64 `json:"handled"`  // requests answered 200
	Messages int64 `json:"messages"` // messages in them (a batch carries several)
	Peak     int64 `json:"peak"`     // requests open at once, at most
	Rejected int64 `json:"rejected"` // answered 429 (--capacity)
}

// startHandler starts the no-op handler on a free loopback port; it holds
// each request for hold before it answers 200. extra are more of its
// flags (--capacity).
func (e *env) startHandler(ctx context.Context, hold time.Duration, extra ...string) (*handlerProc, error) {
	bin, err := e.build(ctx, "noophandler", handlerPackage)
	if err != nil {
		return nil, err
	}
	p, err := sqstest.StartProcess(sqstest.ProcessOptions{
		Name: "no-op handler", Path: bin, Args: append([]string{"--hold", hold.String()}, extra...), Stdout: true,
		Ready: func(line string) bool { return strings.HasPrefix(line, "listening ") },
	})
	if err != nil {
		return nil, err
	}
	return &handlerProc{Process: p, URL: strings.TrimPrefix(p.ReadyLine, "listening ")}, nil
}

// stats reads the handler's counts.
func (h *handlerProc) stats(ctx context.Context) (handlerStats, error) {
	var st handlerStats
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("no-op handler stats: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// stop ends the handler; it is every path's cleanup.
func (h *handlerProc) stop() {
	if _, err := h.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		h.Kill()
	}
}
