package queuestats

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

var server *sqstest.Server

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m, testkit.StartServer(&server))
}

func newPoller(t *testing.T, cfg Config) (*Poller, *metrics.Metrics) {
	m := metrics.New()
	return New(cfg, server.Client(), m.QueueMessages, zap.NewNop()), m
}

func TestStopIsHarmlessTwiceAndBeforeStart(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "qs-life", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, interval := range []time.Duration{0, time.Hour} {
		early, _ := newPoller(t, Config{QueueURL: q.URL, Interval: interval})
		for i := range 2 {
			if err := early.Stop(t.Context()); err != nil {
				t.Errorf("interval %s: Stop %d before Start: %v", interval, i+1, err)
			}
		}
		if err := early.Start(t.Context()); err == nil {
			t.Errorf("interval %s: Start after Stop succeeded", interval)
		}

		p, _ := newPoller(t, Config{QueueURL: q.URL, Interval: interval})
		if err := p.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := p.Start(t.Context()); err == nil {
			t.Errorf("interval %s: a second Start succeeded", interval)
		}
		for i := range 2 {
			if err := p.Stop(t.Context()); err != nil {
				t.Errorf("interval %s: Stop %d: %v", interval, i+1, err)
			}
		}
	}
}

// counts reads the gauges of one queue.
func counts(m *metrics.Metrics, queueURL string) sqsapi.Counts {
	name := sqsapi.QueueName(queueURL)
	v := func(state string) int64 { return int64(testkit.Value(m.QueueMessages.WithLabelValues(name, state))) }
	return sqsapi.Counts{Visible: v(metrics.StateVisible), InFlight: v(metrics.StateInFlight), Delayed: v(metrics.StateDelayed)}
}

func depth(t *testing.T, url string) sqsapi.Counts {
	t.Helper()
	d, err := server.QueueDepth(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	return sqsapi.Counts{Visible: int64(d.Visible), InFlight: int64(d.InFlight), Delayed: int64(d.Delayed)}
}

func TestGaugesAgreeWithGetQueueAttributes(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "qs-depth", sqstest.QueueOptions{MaxReceiveCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	other, err := server.CreateQueue(t.Context(), "qs-other-dlq", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.SendBodies(t.Context(), q.URL, []string{"a", "b", "c"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := server.SendBodies(t.Context(), q.DLQURL, []string{"dead"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := server.SendBodies(t.Context(), other.URL, []string{"x", "y"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, dlqURL, wantDLQ string
	}{
		{"dead-letter queue from the redrive policy", "", q.DLQURL},
		{"dead-letter queue given", other.URL, other.URL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, m := newPoller(t, Config{QueueURL: q.URL, DLQURL: tt.dlqURL, Interval: 20 * time.Millisecond})
			if err := p.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = p.Stop(context.Background()) }()
			testkit.Eventually(t, 30*time.Second, "gauges equal to GetQueueAttributes", func() bool {
				return counts(m, q.URL) == depth(t, q.URL) && counts(m, tt.wantDLQ) == depth(t, tt.wantDLQ)
			})
			before := depth(t, q.URL).Visible
			if err := server.SendBodies(t.Context(), q.URL, []string{"d"}, nil); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 30*time.Second, "the new message counted", func() bool {
				return counts(m, q.URL).Visible == before+1
			})
		})
	}
}
