package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

var (
	server    *sqstest.Server
	workerBin string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sqsworker-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	workerBin = filepath.Join(dir, "worker")
	build := exec.Command("go", "build", "-race", "-o", workerBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build worker:", err)
		return 1
	}
	server, err = sqstest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer server.Stop()
	return m.Run()
}

// proc is a running worker binary.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	done    chan struct{}
	exit    int
	mu      sync.Mutex
	stderr  bytes.Buffer
	metrics string // host:port, known once the worker logged it started
	started chan struct{}
}

// startWorker runs the worker binary (built with -race) against the test
// server.
func startWorker(t *testing.T, args ...string) *proc {
	t.Helper()
	return startBinary(t, workerBin, args...)
}

var (
	plainBuild    sync.Once
	plainBin      string
	plainBuildErr error
)

// plainWorkerBin builds the worker without -race, for the tests that
// measure a rate: the race detector's CPU cost would measure this
// machine's two cores, not the worker.
func plainWorkerBin(t *testing.T) string {
	t.Helper()
	plainBuild.Do(func() {
		plainBin = filepath.Join(filepath.Dir(workerBin), "worker-plain")
		out, err := exec.Command("go", "build", "-o", plainBin, ".").CombinedOutput()
		if err != nil {
			plainBuildErr = fmt.Errorf("build worker without -race: %w\n%s", err, out)
		}
	})
	if plainBuildErr != nil {
		t.Fatal(plainBuildErr)
	}
	return plainBin
}

// startBinary runs a worker binary against the test server.
func startBinary(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	args = append([]string{"run", "--metrics-addr", "127.0.0.1:0", "--log-level", "info"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), server.Env()...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	p := &proc{t: t, cmd: cmd, done: make(chan struct{}), started: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	go p.readLogs(pr)
	go func() {
		err := cmd.Wait()
		p.exit = cmd.ProcessState.ExitCode()
		_ = err
		_ = pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("worker log (last 4 KiB):\n%s", tail(p.logs(), 4096))
		}
		if dir := os.Getenv("SQSWORKER_TEST_LOGS"); dir != "" {
			name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+fmt.Sprintf("-%d.log", cmd.Process.Pid))
			_ = os.WriteFile(name, []byte(p.logs()), 0o600)
		}
	})
	select {
	case <-p.started:
	case <-p.done:
		t.Fatalf("worker exited at start (status %d):\n%s", p.exit, p.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("worker did not start within 30s:\n%s", p.logs())
	}
	return p
}

func (p *proc) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	once := sync.Once{}
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.stderr.WriteString(line + "\n")
		p.mu.Unlock()
		var entry struct {
			Msg         string `json:"msg"`
			MetricsAddr string `json:"metrics_addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "worker started" {
			p.metrics = entry.MetricsAddr
			once.Do(func() { close(p.started) })
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// signal sends sig and waits for the exit, returning the status.
func (p *proc) stop(sig syscall.Signal, within time.Duration) int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.exit
	case <-time.After(within):
		p.t.Fatalf("worker did not exit within %s of %s", within, sig)
		return -1
	}
}

// scrape reads the worker's metrics into name{labels} → value.
func (p *proc) scrape() map[string]float64 {
	p.t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		p.t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		p.t.Fatalf("parse metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			key := name + labelString(m.Label)
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
			}
			if len(m.Label) > 0 {
				out[name] += out[key]
			}
		}
	}
	return out
}

func labelString(ls []*dto.LabelPair) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.GetName() + "=" + l.GetValue()
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// recorder is an HTTP handler that records every body it is given.
type recorder struct {
	mu     sync.Mutex
	counts map[string]int
	total  int
	// behave, when set, decides the status for a body (default 200).
	behave func(body string, n int) int
	srv    *httptest.Server
}

func newRecorder(t *testing.T, behave func(body string, n int) int) *recorder {
	r := &recorder{counts: map[string]int{}, behave: behave}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		body := string(b)
		r.mu.Lock()
		r.counts[body]++
		r.total++
		n := r.counts[body]
		r.mu.Unlock()
		status := http.StatusOK
		if r.behave != nil {
			status = r.behave(body, n)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) snapshot() (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := make(map[string]int, len(r.counts))
	for k, v := range r.counts {
		c[k] = v
	}
	return c, r.total
}

// eventually polls cond every 50ms until it holds or within passes.
var eventually = testkit.Eventually

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// working is a recorder behaviour for a handler whose work takes d and
// succeeds: the time is the handler's own work under test, not a test
// waiting for something.
func working(d time.Duration) func(string, int) int {
	return func(string, int) int {
		t := time.NewTimer(d)
		defer t.Stop()
		<-t.C
		return http.StatusOK
	}
}
