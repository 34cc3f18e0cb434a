package sqstest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// fakeWorkerEnv makes the test binary play the worker binary: it logs the
// way the worker does, serves fakeMetrics, and exits on SIGTERM with
// status SQSTEST_FAKE_EXIT. Its value says how it behaves.
const fakeWorkerEnv = "SQSTEST_FAKE_WORKER"

const fakeMetrics = `# TYPE sqsworker_messages_deleted_total counter
sqsworker_messages_deleted_total 7
# TYPE sqsworker_sqs_requests_total counter
sqsworker_sqs_requests_total{action="ReceiveMessage",outcome="ok"} 3
sqsworker_sqs_requests_total{action="ReceiveMessage",outcome="error"} 1
sqsworker_sqs_requests_total{action="DeleteMessageBatch",outcome="ok"} 2
# TYPE sqsworker_handlers_running gauge
sqsworker_handlers_running 4
# TYPE sqsworker_handler_duration_seconds histogram
sqsworker_handler_duration_seconds_bucket{le="+Inf"} 5
sqsworker_handler_duration_seconds_sum 0.5
sqsworker_handler_duration_seconds_count 5
`

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeWorkerEnv); mode != "" {
		os.Exit(fakeWorker(mode))
	}
	testkit.WrapTestMain(m)
}

func fakeWorker(mode string) int {
	logLine := func(fields map[string]any) {
		b, _ := json.Marshal(fields)
		fmt.Fprintln(os.Stderr, string(b))
	}
	logLine(map[string]any{"msg": "args", "args": os.Args[1:], "endpoint": os.Getenv("AWS_ENDPOINT_URL_SQS")})
	if mode == "exit-at-start" {
		logLine(map[string]any{"level": "error", "msg": "cannot start"})
		return 3
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logLine(map[string]any{"msg": err.Error()})
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, fakeMetrics) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	go func() { _ = http.Serve(ln, mux) }()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	logLine(map[string]any{"msg": "worker started", "metrics_addr": ln.Addr().String()})
	if mode == "ignore-sigterm" {
		select {}
	}
	<-signals
	logLine(map[string]any{"msg": "worker stopped"})
	code := 0
	_, _ = fmt.Sscan(os.Getenv("SQSTEST_FAKE_EXIT"), &code)
	return code
}

// fakeServer is enough of a Server for StartWorker: the fake worker only
// prints the endpoint it was given.
var fakeServer = &sqstest.Server{Endpoint: "http://127.0.0.1:1"}

func startFake(t *testing.T, mode string, env ...string) (*sqstest.Worker, error) {
	t.Helper()
	w, err := fakeServer.StartWorker(os.Args[0], sqstest.WorkerOptions{
		Args: []string{"--queue-url", "http://127.0.0.1:1/q"},
		Env:  append([]string{fakeWorkerEnv + "=" + mode}, env...),
	})
	if w != nil {
		t.Cleanup(w.Kill)
	}
	return w, err
}

func TestWorkerStartScrapeStop(t *testing.T) {
	t.Parallel()
	w, err := startFake(t, "run", "SQSTEST_FAKE_EXIT=5", "AWS_ENDPOINT_URL_SQS=http://127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	if w.MetricsAddr == "" || w.ReadyAt.IsZero() {
		t.Errorf("MetricsAddr %q, ReadyAt %v: want both from the start line", w.MetricsAddr, w.ReadyAt)
	}
	logs := w.Logs()
	for _, want := range []string{`"run","--metrics-addr","127.0.0.1:0"`, `"--queue-url","http://127.0.0.1:1/q"`, `"endpoint":"http://127.0.0.1:2"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the worker's log lacks %s (arguments and environment, later values winning):\n%s", want, logs)
		}
	}
	if !w.Ready(t.Context()) {
		t.Error("Ready = false; want true")
	}
	m, err := w.Scrape(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{name: "counter", metric: "sqsworker_messages_deleted_total", want: 7},
		{name: "every series", metric: "sqsworker_sqs_requests_total", want: 6},
		{name: "one label", metric: "sqsworker_sqs_requests_total", labels: []string{"action", "ReceiveMessage"}, want: 4},
		{name: "two labels", metric: "sqsworker_sqs_requests_total", labels: []string{"action", "ReceiveMessage", "outcome", "error"}, want: 1},
		{name: "no such series", metric: "sqsworker_sqs_requests_total", labels: []string{"action", "SendMessage"}, want: 0},
		{name: "gauge", metric: "sqsworker_handlers_running", want: 4},
		{name: "histogram counts observations", metric: "sqsworker_handler_duration_seconds", want: 5},
		{name: "no such family", metric: "sqsworker_nothing_total", want: 0},
	}
	for _, tt := range tests {
		if got := m.Value(tt.metric, tt.labels...); got != tt.want {
			t.Errorf("%s: Value(%s, %q) = %v, want %v", tt.name, tt.metric, tt.labels, got, tt.want)
		}
	}
	code, err := w.Stop(syscall.SIGTERM, 30*time.Second)
	if err != nil || code != 5 {
		t.Errorf("Stop = %d, %v; want status 5", code, err)
	}
	if !strings.Contains(w.LastLines(1), "worker stopped") {
		t.Errorf("last line %q; want the whole log read by the time Stop returns", w.LastLines(1))
	}
	// Stopping again, or killing, after the exit is harmless.
	if code, err := w.Stop(syscall.SIGTERM, time.Second); err != nil || code != 5 {
		t.Errorf("second Stop = %d, %v; want 5, nil", code, err)
	}
	w.Kill()
}

func TestWorkerExitAtStart(t *testing.T) {
	t.Parallel()
	_, err := startFake(t, "exit-at-start")
	if err == nil || !strings.Contains(err.Error(), "exited at start with status 3") || !strings.Contains(err.Error(), "cannot start") {
		t.Errorf("StartWorker error %v; want the exit status and the worker's last lines", err)
	}
}

func TestWorkerStopKillsAfterTimeout(t *testing.T) {
	t.Parallel()
	w, err := startFake(t, "ignore-sigterm")
	if err != nil {
		t.Fatal(err)
	}
	code, err := w.Stop(syscall.SIGTERM, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed it") || code != -1 {
		t.Errorf("Stop = %d, %v; want -1 and an error saying it was killed", code, err)
	}
	if !w.Exited() {
		t.Error("the worker still runs after Stop killed it")
	}
}

func TestPoll(t *testing.T) {
	t.Parallel()
	n := 0
	if err := sqstest.Poll(t.Context(), 10*time.Second, 50*time.Millisecond, "three looks", func() bool { n++; return n == 3 }); err != nil {
		t.Errorf("Poll = %v; want nil", err)
	}
	err := sqstest.Poll(t.Context(), 20*time.Millisecond, time.Millisecond, "never", func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "timed out after 20ms waiting for never") {
		t.Errorf("Poll = %v; want a timeout naming what it waited for", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sqstest.Poll(ctx, time.Minute, time.Millisecond, "never", func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Errorf("Poll = %v; want context.Canceled", err)
	}
}
