package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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
	out, err := exec.CommandContext(ctx, "go", "build", "-o", path, "github.com/sqsworker/sqsworker/cmd/worker").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/worker: %w\n%s", err, out)
	}
	e.binary = path
	return path, nil
}

// proc is the worker binary running against the run's endpoint.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	metrics string // host:port of /metrics
	mu      sync.Mutex
	tail    []string // last lines of its log
}

// startBinary runs `worker run` with args and waits for its "worker
// started" line, which names the metrics address.
func (e *env) startBinary(ctx context.Context, args ...string) (*proc, error) {
	bin, err := e.workerBinary(ctx)
	if err != nil {
		return nil, err
	}
	args = append([]string{"run", "--metrics-addr", "127.0.0.1:0", "--log-level", "info",
		"--wait-time", e.opts.WaitTime.String()}, args...)
	cmd := exec.Command(bin, args...)
	// The last value of a key wins: the proxy's endpoint in real-region mode.
	cmd.Env = append(append(os.Environ(), e.srv.Env()...), "AWS_ENDPOINT_URL_SQS="+e.endpoint)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	started := make(chan string, 1)
	go func() {
		p.readLog(stderr, started)
		_ = cmd.Wait()
		close(p.done)
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case p.metrics = <-started:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("worker exited at start: %s", p.log())
	case <-t.C:
		p.kill()
		return nil, fmt.Errorf("worker did not start within 30s: %s", p.log())
	}
}

func (p *proc) readLog(r io.Reader, started chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > 20 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
		var entry struct {
			Msg         string `json:"msg"`
			MetricsAddr string `json:"metrics_addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "worker started" {
			started <- entry.MetricsAddr
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// stop sends SIGTERM and waits for the exit.
func (p *proc) stop(within time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("worker exited with status %d: %s", code, p.log())
		}
		return nil
	case <-t.C:
		p.kill()
		return fmt.Errorf("worker did not exit within %s of SIGTERM", within)
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// scrape reads the counters (and gauges) of the worker's /metrics, summed
// per family, per family{ACTION} and per family{outcome=OUTCOME}.
func (p *proc) scrape(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape the worker's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse the worker's metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[name] += v
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "action":
					out[name+"{"+l.GetValue()+"}"] += v
				case "outcome":
					out[name+"{outcome="+l.GetValue()+"}"] += v
				}
			}
		}
	}
	return out, nil
}

// waitDeleted polls the worker's metrics until n deletes are confirmed and
// returns the last scrape.
func (p *proc) waitDeleted(ctx context.Context, n int) (map[string]float64, error) {
	var last map[string]float64
	var scrapeErr error
	err := waitFor(ctx, fmt.Sprintf("%d deletes", n), time.Minute, 10*time.Millisecond, func() bool {
		last, scrapeErr = p.scrape(ctx)
		return scrapeErr != nil || last["sqsworker_messages_deleted_total"] >= float64(n)
	})
	return last, errors.Join(err, scrapeErr)
}

// watchPeaks scrapes the worker every interval and keeps the largest
// value of each named gauge; the returned func stops it and returns them.
func (p *proc) watchPeaks(ctx context.Context, interval time.Duration, names ...string) func() map[string]float64 {
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
			m, err := p.scrape(ctx)
			if err != nil {
				continue
			}
			for _, n := range names {
				peaks[n] = max(peaks[n], m[n])
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
