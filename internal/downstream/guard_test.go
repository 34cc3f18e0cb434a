package downstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

func newGuard(t *testing.T, cfg Config) (*Guard, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 20 * time.Millisecond
	}
	g := New(cfg, zap.NewNop(), m)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background()) })
	return g, m
}

// call runs one call through the guard with the given outcome.
func call(t *testing.T, g *Guard, k Kind) (hold bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := g.Acquire(ctx, nil)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return p.Done(k)
}

func TestClassify(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want Kind
	}{
		{"success", nil, Succeeded},
		{"the message's failure", base, MessageFailed},
		{"unavailable", handler.Unavailable(base, false), Unavailable},
		{"overloaded", handler.Unavailable(base, true), Overloaded},
		{"overloaded with a retry delay", handler.Unavailable(&handler.RetryAfterError{After: time.Second, Err: base}, true), Overloaded},
		{"dead-letter is the message's", handler.DeadLetter("bad", base), MessageFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify = %v, want %v", got, tt.want)
			}
		})
	}
}

// Failures of the message's own, however many, never open the breaker.
func TestPoisonNeverOpens(t *testing.T) {
	t.Parallel()
	g, _ := newGuard(t, Config{})
	for range 200 {
		if call(t, g, MessageFailed) {
			t.Fatal("a message's own failure was held")
		}
	}
	if g.Failing() {
		t.Fatal("breaker opened on the messages' own failures")
	}
}

// A few downstream failures among successes do not open it either.
func TestFewFailuresAmongSuccesses(t *testing.T) {
	t.Parallel()
	g, _ := newGuard(t, Config{})
	for i := range 300 {
		k := Succeeded
		if i%5 == 0 {
			k = Unavailable
		}
		call(t, g, k)
	}
	if g.Failing() {
		t.Fatal("breaker opened at a 20% failure rate")
	}
}

// An outage opens the breaker, holds callers, lets one probe through at a
// time, and on a successful probe closes and ramps back up from one.
func TestOutageHoldsProbesAndRecovers(t *testing.T) {
	t.Parallel()
	g, m := newGuard(t, Config{MinFailures: 5})
	var held bool
	for range 5 {
		held = call(t, g, Unavailable)
	}
	if !held || !g.Failing() {
		t.Fatalf("after 5 of 5 calls failed: hold %v, failing %v; want both", held, g.Failing())
	}
	if v := testkit.Value(m.DownstreamState); v != 2 {
		t.Errorf("sqsworker_downstream_state = %v, want 2", v)
	}

	// Three callers wait; exactly one gets the probe.
	permits := make(chan *Permit, 3)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if p, err := g.Acquire(context.Background(), stop); err == nil {
				permits <- p
			}
		})
	}
	testkit.Eventually(t, 5*time.Second, "three callers held", func() bool { return testkit.Value(m.MessagesHeld) == 3 })
	probe := <-permits
	select {
	case p := <-permits:
		t.Fatalf("a second caller got through while the first probe ran: %v", p)
	case <-time.After(100 * time.Millisecond):
	}
	// The probe fails: still failing, the next probe later.
	if !probe.Done(Unavailable) {
		t.Error("a failed probe's message was not held")
	}
	probe = <-permits
	probe.Done(Succeeded)
	testkit.Eventually(t, 5*time.Second, "breaker closed", func() bool { return !g.Failing() })
	last := <-permits
	last.Done(Succeeded)
	close(stop)
	wg.Wait()
	if v := testkit.Value(m.MessagesHeld); v != 0 {
		t.Errorf("sqsworker_messages_held = %v after recovery, want 0", v)
	}
	if g.Limit() > 4 {
		t.Errorf("limit %d right after recovery: want a ramp from 1", g.Limit())
	}
	for range 40 {
		call(t, g, Succeeded)
	}
	if g.Limit() != 8 {
		t.Errorf("limit %d after 40 successes, want back at the ceiling 8", g.Limit())
	}
}

// A held caller is let go when the pool stops.
func TestStopReleasesHeld(t *testing.T) {
	t.Parallel()
	g, _ := newGuard(t, Config{MinFailures: 1, ProbeInterval: time.Hour, MaxProbeInterval: time.Hour})
	call(t, g, Unavailable)
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := g.Acquire(context.Background(), stop)
		errc <- err
	}()
	close(stop)
	if err := <-errc; !errors.Is(err, ErrStopped) {
		t.Errorf("Acquire after stop: %v, want ErrStopped", err)
	}
}

// Overload answers cut the limit (once per round of calls), successes
// raise it, never past the ceiling, and they never open the breaker while
// the limit can still go down.
func TestAdaptiveLimit(t *testing.T) {
	t.Parallel()
	g, m := newGuard(t, Config{Concurrency: 64})
	for range 30 {
		call(t, g, Overloaded)
	}
	if g.Limit() >= 64 || g.Failing() {
		t.Fatalf("after overload answers: limit %d, failing %v; want below 64, not failing", g.Limit(), g.Failing())
	}
	// Calls that started before a cut do not cut again.
	ctx := context.Background()
	var ps []*Permit
	for range g.Limit() {
		p, err := g.Acquire(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	before := g.Limit()
	for _, p := range ps {
		p.Done(Overloaded)
	}
	if got := g.Limit(); got != max(1, int(float64(before)*0.9)) {
		t.Errorf("limit %d after one round of overload answers from %d; want one cut, to %d", got, before, int(float64(before)*0.9))
	}
	for range 10000 {
		call(t, g, Succeeded)
	}
	if g.Limit() != 64 {
		t.Errorf("limit %d after many successes, want the ceiling 64", g.Limit())
	}
	if v := testkit.Value(m.ConcurrencyLimit); v != 64 {
		t.Errorf("sqsworker_concurrency_limit = %v, want 64", v)
	}
}

// The limit bounds the calls running at once.
func TestLimitBoundsInFlight(t *testing.T) {
	t.Parallel()
	g, _ := newGuard(t, Config{Concurrency: 2})
	a, _ := g.Acquire(context.Background(), nil)
	b, _ := g.Acquire(context.Background(), nil)
	got := make(chan *Permit, 1)
	go func() {
		p, err := g.Acquire(context.Background(), nil)
		if err == nil {
			got <- p
		}
	}()
	select {
	case <-got:
		t.Fatal("a third call started at a limit of 2")
	case <-time.After(50 * time.Millisecond):
	}
	a.Done(Succeeded)
	(<-got).Done(Succeeded)
	b.Done(Succeeded)
}

func TestMaxRate(t *testing.T) {
	t.Parallel()
	g, m := newGuard(t, Config{Concurrency: 4, MaxRate: 100})
	for range 5 {
		call(t, g, Succeeded)
	}
	if v := testkit.Value(m.RateLimitWaits); v < 3 {
		t.Errorf("sqsworker_rate_limit_waits_total = %v after 5 quick starts at 100/s with a burst of 1; want at least 3", v)
	}
}

// With nothing held, a fetcher may receive so that a message can be the
// probe; with messages held it waits.
func TestWaitReceive(t *testing.T) {
	t.Parallel()
	g, _ := newGuard(t, Config{MinFailures: 1, ProbeInterval: 50 * time.Millisecond, MaxProbeInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.WaitReceive(ctx); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	call(t, g, Unavailable)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if p, err := g.Acquire(context.Background(), stop); err == nil {
			p.Done(Unavailable)
		}
	}()
	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancelWait()
	if err := g.WaitReceive(waitCtx); err == nil {
		t.Error("a receive was let through while the breaker was open and a message held")
	}
	<-done // the held message was the probe, and failed
	close(stop)
	if err := g.WaitReceive(ctx); err != nil {
		t.Errorf("nothing held and the probe due: %v, want a receive let through", err)
	}
}

// With a health URL, nothing is received until it answers, and it is the
// probe: held callers go on once it answers again.
func TestHealthURL(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	g, _ := newGuard(t, Config{HealthURL: srv.URL, MinFailures: 1, MaxProbeInterval: 40 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	short, cancelShort := context.WithTimeout(ctx, 60*time.Millisecond)
	defer cancelShort()
	if err := g.WaitReceive(short); err == nil {
		t.Fatal("received before the health URL answered")
	}
	healthy.Store(true)
	if err := g.WaitReceive(ctx); err != nil {
		t.Fatalf("after the health URL answered: %v", err)
	}
	healthy.Store(false)
	call(t, g, Unavailable)
	if !g.Failing() {
		t.Fatal("not failing after an unavailable call at min failures 1")
	}
	healthy.Store(true)
	p, err := g.Acquire(ctx, nil)
	if err != nil {
		t.Fatalf("held caller after the health URL recovered: %v", err)
	}
	p.Done(Succeeded)
}
