package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

var (
	server    *sqstest.Server
	workerBin string
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m, buildWorker, testkit.StartServer(&server))
}

// buildWorker builds the worker binary with -race into a temporary
// directory, removed after the tests.
func buildWorker() (func(), error) {
	dir, err := os.MkdirTemp("", "sqsworker-test")
	if err != nil {
		return nil, err
	}
	workerBin = filepath.Join(dir, "worker")
	return func() { _ = os.RemoveAll(dir) }, sqstest.BuildWorker(context.Background(), workerBin, "-race")
}

// proc is a worker binary a test started; its methods fail the test.
type proc struct {
	*sqstest.Worker
	t *testing.T
}

// startWorker runs the worker binary (built with -race) against the test
// server.
func startWorker(t *testing.T, args ...string) proc {
	t.Helper()
	return startBinary(t, workerBin, args...)
}

var (
	plainBuild    sync.Once
	plainBin      string
	plainBuildErr error
)

// plainWorkerBin builds the worker without -race, for the tests that
// measure a rate: the race detector's CPU cost would measure the machine,
// not the worker.
func plainWorkerBin(t *testing.T) string {
	t.Helper()
	plainBuild.Do(func() {
		plainBin = filepath.Join(filepath.Dir(workerBin), "worker-plain")
		plainBuildErr = sqstest.BuildWorker(context.Background(), plainBin)
	})
	if plainBuildErr != nil {
		t.Fatal(plainBuildErr)
	}
	return plainBin
}

// startBinary runs a worker binary against the test server; the test
// kills it at its end if it still runs, and logs its last lines if the test
// failed. With SQSWORKER_TEST_LOGS set to a directory, every worker's whole
// log is written there.
func startBinary(t *testing.T, bin string, args ...string) proc {
	t.Helper()
	w, err := server.StartWorker(bin, sqstest.WorkerOptions{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Kill()
		if t.Failed() {
			t.Logf("worker log (last 40 lines):\n%s", w.LastLines(40))
		}
		if dir := os.Getenv("SQSWORKER_TEST_LOGS"); dir != "" {
			name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+fmt.Sprintf("-%d.log", w.PID()))
			_ = os.WriteFile(name, []byte(w.Logs()), 0o600)
		}
	})
	return proc{Worker: w, t: t}
}

// stop sends sig and waits for the exit, returning the status.
func (p proc) stop(sig syscall.Signal, within time.Duration) int {
	p.t.Helper()
	code, err := p.Stop(sig, within)
	if err != nil {
		p.t.Fatal(err)
	}
	return code
}

// scrape reads the worker's metrics.
func (p proc) scrape() sqstest.Metrics {
	p.t.Helper()
	m, err := p.Scrape(p.t.Context())
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// ready reports whether the worker's /readyz answers 200.
func (p proc) ready() bool { return p.Ready(p.t.Context()) }

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

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
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
