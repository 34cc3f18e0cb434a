package worker

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

var server *sqstest.Server

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m, testkit.StartServer(&server), func() (func(), error) {
		return nil, server.Setenv()
	})
}

// running is a worker running in-process.
type running struct {
	t *testing.T
	w *Worker
}

func start(t *testing.T, cfg config.Config, h handler.Handler) *running {
	t.Helper()
	cfg.EndpointURL = server.Endpoint
	cfg.MetricsAddr = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return startWith(t, cfg, h)
}

// newWorker wires a worker on cfg with a client for the test server.
func newWorker(t *testing.T, cfg config.Config, h handler.Handler, opts ...Option) (*Worker, error) {
	t.Helper()
	client, err := sqsapi.New(ctxT(t), sqsapi.Options{EndpointURL: server.Endpoint, Region: sqstest.Region})
	if err != nil {
		t.Fatal(err)
	}
	return New(ctxT(t), cfg.Pipeline, client, h, testLogger(), opts...)
}

// startWith runs a worker on a validated cfg.
func startWith(t *testing.T, cfg config.Config, h handler.Handler, opts ...Option) *running {
	t.Helper()
	w, err := newWorker(t, cfg, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := &running{t: t, w: w}
	t.Cleanup(func() { _ = w.StopAndCancel(context.Background()) })
	return r
}

// stop stops the worker gracefully and waits for it, then returns why it
// stopped on its own, if it did.
func (r *running) stop(within time.Duration) error {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := r.w.Stop(ctx); err != nil {
		r.t.Fatalf("Stop did not return within %s", within)
	}
	return r.w.Err()
}

func (r *running) ready() bool {
	ok, _ := r.w.Ready()
	return ok
}

func (r *running) outcome(o string) float64 {
	return testkit.Value(r.w.Metrics().MessagesProcessed.WithLabelValues(o))
}

// tally counts handler calls per body.
type tally struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *tally) add(body string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[body]++
	return c.counts[body]
}

func (c *tally) get(body string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[body]
}

func (c *tally) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.counts)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func goodBodies(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("good-%04d", i)
	}
	return out
}

// TestHandlerPanicTimeoutHang: a handler that panics, one that overruns
// --handler-timeout, and one that ignores its cancellation are each
// counted and retried, while 500 good messages flow and the worker stays
// up and ready.
func TestHandlerPanicTimeoutHang(t *testing.T) {
	q, err := server.CreateQueue(ctxT(t), "worker-faults", sqstest.QueueOptions{VisibilityTimeout: 10, MaxReceiveCount: 5})
	if err != nil {
		t.Fatal(err)
	}
	good := goodBodies(500)
	if err := server.SendBodies(ctxT(t), q.URL, append([]string{"panic", "timeout", "hang"}, good...), nil); err != nil {
		t.Fatal(err)
	}
	unhang := make(chan struct{})
	var unhangOnce sync.Once
	t.Cleanup(func() { unhangOnce.Do(func() { close(unhang) }) })
	var calls tally
	h := handler.Func(func(ctx context.Context, msg *message.Message) error {
		n := calls.add(msg.Body)
		switch {
		case msg.Body == "panic" && n <= 2:
			panic("handler bug")
		case msg.Body == "timeout" && n == 1:
			<-ctx.Done()
			return ctx.Err()
		case msg.Body == "hang" && n == 1:
			<-unhang // ignores ctx
		}
		return nil
	})
	cfg := config.Default()
	cfg.QueueURL, cfg.Concurrency, cfg.WaitTime = q.URL, 8, time.Second
	cfg.VisibilityTimeout, cfg.HandlerTimeout = 10*time.Second, 500*time.Millisecond
	cfg.RetryBackoffMin, cfg.RetryBackoffMax = 100*time.Millisecond, 100*time.Millisecond
	r := start(t, cfg, h)

	testkit.Eventually(t, 10*time.Second, "the hung handler's message retried and handled", func() bool { return calls.get("hang") == 2 })
	hung := testkit.Value(r.w.Metrics().HandlersHung)
	testkit.Eventually(t, 10*time.Second, "every message handled", func() bool { return calls.distinct() == len(good)+3 })
	testkit.Eventually(t, 10*time.Second, "every message deleted", func() bool {
		return testkit.Value(r.w.Metrics().MessagesDeleted) == float64(len(good)+3)
	})
	ready := r.ready()
	unhangOnce.Do(func() { close(unhang) })
	if err := r.stop(time.Minute); err != nil {
		t.Errorf("Run: %v", err)
	}
	dup := 0
	for _, b := range good {
		dup += calls.get(b) - 1
	}
	d, err := server.QueueDepth(ctxT(t), q.URL)
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := server.QueueDepth(ctxT(t), q.DLQURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figures: panic_calls=%d timeout_calls=%d hang_calls=%d outcome_panic=%.0f outcome_timeout=%.0f hung_while_held=%.0f good_duplicates=%d ready=%v left=%d dlq=%d",
		calls.get("panic"), calls.get("timeout"), calls.get("hang"), r.outcome("panic"), r.outcome("timeout"), hung, dup, ready,
		d.Visible+d.InFlight, dlq.Visible)
	if calls.get("panic") != 3 || calls.get("timeout") != 2 || calls.get("hang") != 2 {
		t.Errorf("calls: panic %d (want 3), timeout %d (want 2), hang %d (want 2)", calls.get("panic"), calls.get("timeout"), calls.get("hang"))
	}
	if r.outcome("panic") != 2 || r.outcome("timeout") != 2 {
		t.Errorf("outcomes: panic %v (want 2), timeout %v (want 2: one overrun, one hung)", r.outcome("panic"), r.outcome("timeout"))
	}
	if hung != 1 {
		t.Errorf("sqsworker_handlers_hung = %v while the handler was held; want 1", hung)
	}
	if dup != 0 || !ready || d.Visible+d.InFlight != 0 || dlq.Visible != 0 {
		t.Errorf("good duplicates %d, ready %v, left in queue %d, in DLQ %d: want 0, true, 0, 0", dup, ready, d.Visible+d.InFlight, dlq.Visible)
	}
}

// TestShutdownNotHeldByHungHandler: SIGTERM while a handler ignores its
// context; near the end of the shutdown timeout the handler is cancelled,
// its message is released without it, and Run returns in time.
func TestShutdownNotHeldByHungHandler(t *testing.T) {
	q, err := server.CreateQueue(ctxT(t), "worker-hang", sqstest.QueueOptions{VisibilityTimeout: 60})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.SendBodies(ctxT(t), q.URL, []string{"hang"}, nil); err != nil {
		t.Fatal(err)
	}
	unhang := make(chan struct{})
	started := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { close(unhang) })
	cfg := config.Default()
	cfg.QueueURL, cfg.WaitTime, cfg.ShutdownTimeout = q.URL, time.Second, time.Second
	r := start(t, cfg, handler.Func(func(context.Context, *message.Message) error {
		once.Do(func() { close(started) })
		<-unhang
		return nil
	}))
	<-started
	begin := time.Now()
	if err := r.stop(30 * time.Second); err != nil {
		t.Errorf("Run: %v", err)
	}
	took := time.Since(begin)
	d, err := server.QueueDepth(ctxT(t), q.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figures: shutdown_took=%s visible_after=%d in_flight_after=%d", took.Round(time.Millisecond), d.Visible, d.InFlight)
	if d.Visible != 1 {
		t.Errorf("visible %d after shutdown, want 1: the hung handler's message should be released", d.Visible)
	}
	// The bound is the point of the test: a hung handler must not hold
	// the process past --shutdown-timeout (a second of slack for -race).
	if took > cfg.ShutdownTimeout+time.Second {
		t.Errorf("shutdown took %s with --shutdown-timeout %s", took, cfg.ShutdownTimeout)
	}
}

// TestAdaptiveLeases: with a 2s visibility timeout and 5s handlers, the
// first wave is extended 2s at a time; once the handler times are
// measured, extensions follow their p99 (5s), so the second wave needs far
// fewer of them. No message is redelivered in either wave.
func TestAdaptiveLeases(t *testing.T) {
	const wave, handlerTime = 10, 5 * time.Second
	q, err := server.CreateQueue(ctxT(t), "worker-adaptive", sqstest.QueueOptions{VisibilityTimeout: 2})
	if err != nil {
		t.Fatal(err)
	}
	var calls tally
	h := handler.Func(func(ctx context.Context, msg *message.Message) error {
		calls.add(msg.Body)
		tm := time.NewTimer(handlerTime) // the handler's own work
		defer tm.Stop()
		select {
		case <-tm.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	cfg := config.Default()
	cfg.QueueURL, cfg.Concurrency, cfg.WaitTime = q.URL, wave, time.Second
	cfg.VisibilityTimeout, cfg.MaxExtension = 2*time.Second, time.Minute
	r := start(t, cfg, h)
	m := r.w.Metrics()

	extended := func(bodies []string) float64 {
		before := testkit.Value(m.VisibilityExtensions)
		if err := server.SendBodies(ctxT(t), q.URL, bodies, nil); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, time.Minute, "the wave deleted", func() bool {
			return testkit.Value(m.MessagesDeleted) == float64(calls.distinct()) && calls.distinct()%wave == 0 &&
				calls.get(bodies[len(bodies)-1]) > 0 && testkit.Value(m.MessagesInFlight) == 0
		})
		return testkit.Value(m.VisibilityExtensions) - before
	}
	first := extended(goodBodies(wave))
	second := make([]string, wave)
	for i := range second {
		second[i] = fmt.Sprintf("second-%02d", i)
	}
	secondExt := extended(second)
	afterFirst := testkit.Value(m.ExtensionSeconds) // set by the second wave's heartbeats
	if err := r.stop(time.Minute); err != nil {
		t.Errorf("Run: %v", err)
	}
	redelivered := 0
	for _, b := range append(goodBodies(wave), second...) {
		redelivered += calls.get(b) - 1
	}
	t.Logf("figures: handler=%s visibility=2s extensions_per_message first_wave=%.1f second_wave=%.1f extension_in_second_wave=%.0fs redeliveries=%d",
		handlerTime, first/wave, secondExt/wave, afterFirst, redelivered)
	if redelivered != 0 {
		t.Errorf("%d redeliveries, want 0", redelivered)
	}
	if afterFirst < 5 || afterFirst > 7 {
		t.Errorf("extension in the second wave = %.0fs; want about the 5s handler time", afterFirst)
	}
	if secondExt*2 > first {
		t.Errorf("second wave needed %.0f extensions, not under half the first wave's %.0f", secondExt, first)
	}
}

func testLogger() *zap.Logger {
	if os.Getenv("SQSWORKER_TEST_VERBOSE") == "" {
		return zap.NewNop()
	}
	return zap.NewExample()
}

// TestLifecycle: Stop before Start, and Stop, StopAndCancel and Stop again
// after it, are harmless; only the first Start starts.
func TestLifecycle(t *testing.T) {
	q, err := server.CreateQueue(ctxT(t), "worker-lifecycle", sqstest.QueueOptions{VisibilityTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.QueueURL, cfg.EndpointURL, cfg.MetricsAddr, cfg.WaitTime = q.URL, server.Endpoint, "", time.Second
	noop := handler.Func(func(context.Context, *message.Message) error { return nil })

	never, err := newWorker(t, cfg, noop)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := never.Stop(ctxT(t)); err != nil {
			t.Errorf("Stop #%d before Start = %v; want nil", i+1, err)
		}
	}
	if err := never.Start(ctxT(t)); err == nil {
		t.Error("Start after Stop = nil; want an error")
	}

	w, err := newWorker(t, cfg, noop)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctxT(t)); err == nil {
		t.Error("second Start = nil; want an error")
	}
	for i, stop := range []func(context.Context) error{w.Stop, w.StopAndCancel, w.Stop} {
		if err := stop(ctxT(t)); err != nil {
			t.Errorf("stop #%d = %v; want nil", i+1, err)
		}
	}
	select {
	case <-w.Done():
	default:
		t.Error("Done not closed after Stop returned")
	}
	if err := w.Err(); err != nil {
		t.Errorf("Err = %v after a Stop; want nil", err)
	}
}
