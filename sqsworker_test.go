package sqsworker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// The worker is used here only through the public package; the local SQS
// server and its queues come from the test harness.
var server *sqstest.Server

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m, testkit.StartServer(&server))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// queueWith creates a queue holding n messages, bodies "0" to "n-1".
func queueWith(t *testing.T, name string, n, visibility int) sqstest.Queue {
	t.Helper()
	q, err := server.CreateQueue(ctxT(t), name, sqstest.QueueOptions{VisibilityTimeout: visibility})
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = fmt.Sprint(i)
	}
	if err := server.SendBodies(ctxT(t), q.URL, bodies, nil); err != nil {
		t.Fatal(err)
	}
	return q
}

func depth(t *testing.T, url string) sqstest.Depth {
	t.Helper()
	d, err := server.QueueDepth(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestEveryMessageOnce: 5,000 messages through a Go function, each handled
// exactly once and deleted, with the metrics on the registry the test
// passed and nothing on the default one.
func TestEveryMessageOnce(t *testing.T) {
	t.Parallel()
	const n = 5000
	q := queueWith(t, "public-once", n, 30)
	var mu sync.Mutex
	seen := map[string]int{} // by body: the bodies are 0 to n-1
	byID := map[string]int{}
	h := sqsworker.HandlerFunc(func(_ context.Context, m *sqsworker.Message) error {
		if m.ID == "" || m.ReceiveCount < 1 || m.SentAt.IsZero() || m.QueueURL != q.URL {
			return fmt.Errorf("message fields missing: %+v", m)
		}
		mu.Lock()
		seen[m.Body]++
		byID[m.ID]++
		mu.Unlock()
		return nil
	})
	reg := prometheus.NewRegistry()
	defaultBefore := countFamilies(t, prometheus.DefaultGatherer, "sqsworker_")
	w, err := sqsworker.New(server.Client(), q.URL, h, &sqsworker.Config{Concurrency: 32, WaitTime: time.Second},
		sqsworker.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 2*time.Minute, "every message handled and deleted", func() bool {
		mu.Lock()
		handled := len(seen)
		mu.Unlock()
		d := depth(t, q.URL)
		return handled == n && d.Visible+d.InFlight == 0
	})
	if err := w.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	lost, dup := 0, 0
	for i := range n {
		if seen[fmt.Sprint(i)] == 0 {
			lost++
		}
	}
	for _, c := range byID {
		dup += c - 1 // a message handled twice keeps its id
	}
	if len(byID) != len(seen) {
		t.Errorf("%d message ids for %d bodies; want one id per body", len(byID), len(seen))
	}
	t.Logf("messages: %d, handled: %d (%d ids), lost: %d, duplicates: %d", n, len(seen), len(byID), lost, dup)
	if lost != 0 || dup != 0 {
		t.Errorf("lost %d, duplicates %d; want 0 and 0", lost, dup)
	}
	if got := gathered(t, reg, "sqsworker_messages_processed_total", `outcome="success"`); got != n {
		t.Errorf("sqsworker_messages_processed_total{outcome=success} = %v on the registry passed; want %d", got, n)
	}
	if got := gathered(t, reg, "sqsworker_messages_deleted_total", ""); got != n {
		t.Errorf("sqsworker_messages_deleted_total = %v; want %d", got, n)
	}
	if after := countFamilies(t, prometheus.DefaultGatherer, "sqsworker_"); after != defaultBefore {
		t.Errorf("the default registry has %d sqsworker_ families, %d before; want none added", after, defaultBefore)
	}
}

// TestStopLetsRunningHandlersFinish: a graceful Stop waits for the
// handlers running, deletes what they finished, and hands every message
// that never started back to SQS at once.
func TestStopLetsRunningHandlersFinish(t *testing.T) {
	t.Parallel()
	const n, concurrency = 40, 4
	q := queueWith(t, "public-stop", n, 60)
	var running, finished, cancelled atomic.Int32
	release := make(chan struct{})
	h := sqsworker.HandlerFunc(func(ctx context.Context, _ *sqsworker.Message) error {
		running.Add(1)
		<-release
		if ctx.Err() != nil {
			cancelled.Add(1)
		}
		finished.Add(1)
		return nil
	})
	w, err := sqsworker.New(server.Client(), q.URL, h,
		&sqsworker.Config{Concurrency: concurrency, WaitTime: time.Second, ShutdownTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "every handler busy and the buffer full", func() bool {
		d := depth(t, q.URL)
		return running.Load() == concurrency && d.InFlight == 2*concurrency
	})
	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop(ctxT(t)) }()
	// The stop hands the buffered messages back at once, and waits for the
	// running ones.
	testkit.Eventually(t, time.Minute, "the buffered messages handed back", func() bool {
		return depth(t, q.URL).Visible == n-concurrency
	})
	select {
	case <-w.Stopped():
		t.Fatal("Stop returned while handlers were still running")
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if running.Load() != concurrency || finished.Load() != concurrency || cancelled.Load() != 0 {
		t.Errorf("handlers started %d, finished %d, cancelled %d; want %d, %d, 0",
			running.Load(), finished.Load(), cancelled.Load(), concurrency, concurrency)
	}
	d := depth(t, q.URL)
	t.Logf("after Stop: %d visible, %d in flight (of %d; %d handled)", d.Visible, d.InFlight, n, finished.Load())
	if d.Visible != n-concurrency || d.InFlight != 0 {
		t.Errorf("queue: %d visible, %d in flight; want the %d never started visible at once and nothing in flight",
			d.Visible, d.InFlight, n-concurrency)
	}
}

// TestStopAndCancelCancelsRunningHandlers: a forced stop cancels the
// running handlers' contexts, deletes nothing they did not finish, and
// hands every message back to SQS.
func TestStopAndCancelCancelsRunningHandlers(t *testing.T) {
	t.Parallel()
	const n, concurrency = 40, 4
	q := queueWith(t, "public-cancel", n, 60)
	var running, cancelled atomic.Int32
	h := sqsworker.HandlerFunc(func(ctx context.Context, _ *sqsworker.Message) error {
		running.Add(1)
		<-ctx.Done()
		cancelled.Add(1)
		return ctx.Err()
	})
	w, err := sqsworker.New(server.Client(), q.URL, h,
		&sqsworker.Config{Concurrency: concurrency, WaitTime: time.Second, ShutdownTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "every handler busy", func() bool { return running.Load() == concurrency })
	begun := time.Now()
	if err := w.StopAndCancel(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("StopAndCancel returned after %s with a shutdown timeout of an hour", time.Since(begun).Round(time.Millisecond))
	if cancelled.Load() != running.Load() || running.Load() != concurrency {
		t.Errorf("handlers started %d, saw their context cancelled %d; want %d and %d", running.Load(), cancelled.Load(), concurrency, concurrency)
	}
	d := depth(t, q.URL)
	if d.Visible != n || d.InFlight != 0 {
		t.Errorf("queue: %d visible, %d in flight; want all %d visible again, none deleted", d.Visible, d.InFlight, n)
	}
}

// TestRunStopsWhenContextEnds: Run returns nil once its context ends, after
// a graceful stop; the worker runs once.
func TestRunStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	q := queueWith(t, "public-run", 10, 30)
	var handled atomic.Int32
	h := sqsworker.HandlerFunc(func(context.Context, *sqsworker.Message) error { handled.Add(1); return nil })
	w, err := sqsworker.New(server.Client(), q.URL, h, &sqsworker.Config{WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Ready(); err == nil {
		t.Error("Ready before Start = nil; want an error")
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	testkit.Eventually(t, time.Minute, "the messages handled and the worker ready", func() bool {
		return handled.Load() == 10 && w.Ready() == nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after its context ended; want nil", err)
	}
	if err := w.Start(ctxT(t)); !errors.Is(err, sqsworker.ErrStarted) {
		t.Errorf("Start after Run = %v; want ErrStarted", err)
	}
}

// TestNewNamesTheFieldAtFault: a bad setting is one error at New that names
// the Config field, and a missing queue is Start's error.
func TestNewNamesTheFieldAtFault(t *testing.T) {
	t.Parallel()
	noop := sqsworker.HandlerFunc(func(context.Context, *sqsworker.Message) error { return nil })
	tests := []struct {
		name string
		cfg  sqsworker.Config
		want string
	}{
		{name: "concurrency", cfg: sqsworker.Config{Concurrency: 20000}, want: "Concurrency is 20000"},
		{name: "visibility", cfg: sqsworker.Config{VisibilityTimeout: time.Second}, want: "VisibilityTimeout is 1s"},
		{name: "breaker", cfg: sqsworker.Config{Downstream: sqsworker.DownstreamConfig{BreakerFailureRate: 2}}, want: "BreakerFailureRate is 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := sqsworker.New(server.Client(), "orders", noop, &tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v; want an error containing %q", err, tt.want)
			}
		})
	}
	w, err := sqsworker.New(server.Client(), "no-such-queue", noop, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctxT(t)); err == nil || !strings.Contains(err.Error(), "no-such-queue") {
		t.Errorf("Start on a missing queue = %v; want an error naming it", err)
	}
}

func countFamilies(t *testing.T, g prometheus.Gatherer, prefix string) int {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), prefix) {
			n++
		}
	}
	return n
}

// gathered is the value of the series of name whose labels contain match.
func gathered(t *testing.T, g prometheus.Gatherer, name, match string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += fmt.Sprintf("%s=%q,", l.GetName(), l.GetValue())
			}
			if strings.Contains(labels, match) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return -1
}
