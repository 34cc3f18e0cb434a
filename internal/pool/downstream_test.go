package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/downstream"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func newGate(t *testing.T, m *metrics.Metrics, cfg downstream.Config) *downstream.Guard {
	t.Helper()
	g := downstream.New(cfg, zap.NewNop(), m)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background()) })
	return g
}

// Through an outage, messages that failed for the downstream's reasons
// are held and run again, never handed back to SQS with a retry delay.
func TestOutageHoldsMessages(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	calls := map[string]int{}
	h := handler.Func(func(_ context.Context, msg *message.Message) error {
		mu.Lock()
		calls[msg.ID]++
		mu.Unlock()
		if down.Load() {
			return handler.Unavailable(errors.New("connection refused"), false)
		}
		return nil
	})
	tp := newTestPool(Config{Concurrency: 4}, h)
	tp.cfg.Gate = newGate(t, tp.metrics, downstream.Config{Concurrency: 4, MinFailures: 3, ProbeInterval: 10 * time.Millisecond, MaxProbeInterval: 20 * time.Millisecond})
	in := make(chan *message.Message, 8)
	for i := range 8 {
		in <- newMessage(string(rune('a'+i)), 1)
	}
	done := tp.start(context.Background(), in)
	testkit.Eventually(t, 5*time.Second, "messages held", func() bool { return testkit.Value(tp.metrics.MessagesHeld) >= 3 })
	down.Store(false)
	testkit.Eventually(t, 5*time.Second, "every message deleted after recovery", func() bool { return len(tp.acker.all()) == 8 })
	close(in)
	wait(t, done, "the pool")
	if r := tp.leases.snapshot().retries; len(r) != 0 {
		t.Errorf("%d messages handed back to SQS with a retry delay during the outage; want 0", len(r))
	}
	if f := tp.outcome(metrics.OutcomeFailure); f != 0 {
		t.Errorf("%v failures counted; want 0: held messages are not failures", f)
	}
}

// A stop releases held messages at once, counted as released.
func TestStopReleasesHeldMessages(t *testing.T) {
	t.Parallel()
	h := handler.Func(func(context.Context, *message.Message) error {
		return handler.Unavailable(errors.New("503"), true)
	})
	tp := newTestPool(Config{Concurrency: 4}, h)
	tp.cfg.Gate = newGate(t, tp.metrics, downstream.Config{Concurrency: 4, MinFailures: 1, DisableAdaptive: true, ProbeInterval: time.Hour, MaxProbeInterval: time.Hour})
	in := make(chan *message.Message, 4)
	for i := range 4 {
		in <- newMessage(string(rune('a'+i)), 1)
	}
	done := tp.start(context.Background(), in)
	testkit.Eventually(t, 5*time.Second, "four messages held", func() bool { return testkit.Value(tp.metrics.MessagesHeld) == 4 })
	close(in)
	if err := tp.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	wait(t, done, "the pool")
	if got := len(tp.leases.snapshot().released); got != 4 {
		t.Errorf("%d released at the stop, want 4", got)
	}
	if r := tp.outcome(metrics.OutcomeReleased); r != 4 {
		t.Errorf("outcome released = %v, want 4", r)
	}
}

type fakeDeadLetter struct {
	mu      sync.Mutex
	sent    map[string]string
	SendErr error
}

func (d *fakeDeadLetter) Send(_ context.Context, msg *message.Message, reason string) error {
	if d.SendErr != nil {
		return d.SendErr
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sent[msg.ID] = reason
	return nil
}

func TestDeadLetterNow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		sendErr    error
		wantSent   bool
		wantDelete bool
	}{
		{"sent, then deleted", nil, true, true},
		{"send fails: retried, not deleted", errors.New("throttled"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := handler.Func(func(context.Context, *message.Message) error {
				return handler.DeadLetter("bad-schema", errors.New("status 422"))
			})
			dl := &fakeDeadLetter{sent: map[string]string{}, SendErr: tt.sendErr}
			tp := newTestPool(Config{DeadLetter: dl}, h)
			wait(t, tp.start(context.Background(), feed(newMessage("m", 1))), "the pool")
			if _, sent := dl.sent["m"]; sent != tt.wantSent || (sent && dl.sent["m"] != "bad-schema") {
				t.Errorf("sent %v with reason %q; want sent %v with bad-schema", sent, dl.sent["m"], tt.wantSent)
			}
			if deleted := len(tp.acker.all()) == 1; deleted != tt.wantDelete {
				t.Errorf("deleted %v, want %v", deleted, tt.wantDelete)
			}
			if retried := len(tp.leases.snapshot().retries) == 1; retried == tt.wantDelete {
				t.Errorf("retried %v, want %v", retried, !tt.wantDelete)
			}
		})
	}
}

// On its last receive, a message that failed for the downstream's reasons
// is kept and retried here, never handed back for SQS to dead-letter.
func TestLastReceiveKeptThroughDownstreamFailures(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := handler.Func(func(context.Context, *message.Message) error {
		if calls.Add(1) <= 6 {
			return handler.Unavailable(errors.New("502"), false)
		}
		return nil
	})
	tp := newTestPool(Config{Concurrency: 1, MaxReceiveCount: 5}, h)
	tp.cfg.Gate = newGate(t, tp.metrics, downstream.Config{Concurrency: 1, DisableBreaker: true})
	wait(t, tp.start(context.Background(), feed(newMessage("m", 5))), "the pool")
	if n := calls.Load(); n != 7 {
		t.Errorf("%d calls, want 7: six failures kept here, then the success", n)
	}
	if r := tp.leases.snapshot().retries; len(r) != 0 {
		t.Errorf("handed back to SQS %d times on its last receive; want 0", len(r))
	}
	if len(tp.acker.all()) != 1 {
		t.Error("not deleted after the success")
	}
}
