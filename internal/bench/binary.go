package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// workerBinary builds ./cmd/worker once per run, unless one was given.
func (e *env) workerBinary(ctx context.Context) (string, error) {
	if e.opts.WorkerBinary != "" {
		return e.opts.WorkerBinary, nil
	}
	if e.binary != "" {
		return e.binary, nil
	}
	path := filepath.Join(e.tmp, "worker")
	e.progress("building the worker binary")
	if err := sqstest.BuildWorker(ctx, path); err != nil {
		return "", err
	}
	e.binary = path
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
// returns the last scrape.
func (p proc) waitDeleted(ctx context.Context, n int) (sqstest.Metrics, error) {
	var last sqstest.Metrics
	var scrapeErr error
	err := sqstest.Poll(ctx, time.Minute, 10*time.Millisecond, fmt.Sprintf("%d deletes", n), func() bool {
		last, scrapeErr = p.Scrape(ctx)
		return scrapeErr != nil || last.Value("sqsworker_messages_deleted_total") >= float64(n)
	})
	return last, errors.Join(err, scrapeErr)
}

// binaryNoop runs noop-throughput's messages through the worker binary
// with an HTTP no-op handler served here, to show that its requests per
// message match the in-process worker's. Its msg/s is lower: every message
// also crosses HTTP.
func (e *env) binaryNoop(ctx context.Context) error {
	n := e.throughputMessages()
	q, err := e.fill(ctx, "binary-noop", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	s, err := startSink(0, n)
	if err != nil {
		return err
	}
	defer func() { _ = s.close() }()
	e.progress("%s: worker binary consumes %d messages (HTTP no-op handler)", scenarioBinary, n)
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
	limit := "floor 0.200 (one receive and one delete per 10)"
	if e.noop.perMsg > 0 {
		limit += fmt.Sprintf("; in-process worker %.3f (difference %+.3f)", e.noop.perMsg, perMsg-e.noop.perMsg)
	}
	e.add(scenarioBinary, "binary, HTTP no-op handler: SQS requests per message", perMsg, "req/msg", atMost(0.21),
		limit, 0.2, fmt.Sprintf("%s; %s", breakdown(reqs, n), setting))
	limit = fmt.Sprintf("none in this run: the in-process worker's msg/s comes from %s", scenarioThroughput)
	if e.noop.rate > 0 {
		limit = fmt.Sprintf("in-process worker %s", format(e.noop.rate, "msg/s"))
		if e.noop.rawRate > 0 {
			limit += fmt.Sprintf("; raw SDK loop %s", format(e.noop.rawRate, "msg/s"))
		}
	}
	e.add(scenarioBinary, "binary, HTTP no-op handler: msg/s (lower: each message also crosses HTTP)", rate, "msg/s", nil,
		limit, e.noop.rate, setting)
	return nil
}

// watchPeaks scrapes the worker every interval and keeps the largest
// value of each named gauge; the returned func stops it and returns them.
func (p proc) watchPeaks(ctx context.Context, interval time.Duration, names ...string) func() map[string]float64 {
	peaks := map[string]float64{}
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

// cpuSeconds is the process's user plus system time, from /proc/PID/stat
// (in clock ticks of 1/100 s, USER_HZ on Linux).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it do not.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil
}

// peakRSS is the process's VmHWM from /proc/PID/status, in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// sink is the HTTP handler the binary posts to: it holds each request for
// hold, counts them, and tracks how many are open at once.
type sink struct {
	hold                time.Duration
	target              int64
	all                 chan struct{}
	open, peak, handled atomic.Int64
	srv                 *http.Server
	ln                  net.Listener
	URL                 string
	serveErr            chan error
}

// startSink serves on a free loopback port until close; all is closed once
// target requests were answered.
func startSink(hold time.Duration, target int) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{hold: hold, target: int64(target), all: make(chan struct{}), ln: ln,
		URL: "http://" + ln.Addr().String() + "/", serveErr: make(chan error, 1)}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { s.serveErr <- s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	n := s.open.Add(1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if s.hold > 0 {
		t := time.NewTimer(s.hold)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	s.open.Add(-1)
	w.WriteHeader(http.StatusOK)
	if s.handled.Add(1) == s.target {
		close(s.all)
	}
}

// close stops the server; its error is Serve's, unless that is the
// expected http.ErrServerClosed.
func (s *sink) close() error {
	_ = s.srv.Close()
	if err := <-s.serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
