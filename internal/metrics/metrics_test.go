package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestNewUsesOwnRegistry(t *testing.T) {
	t.Parallel()
	// Two sets side by side would panic on a shared registry.
	a, b := New(), New()
	a.MessagesReceived.Inc()
	if got := testkit.Value(b.MessagesReceived); got != 0 {
		t.Errorf("second registry's received = %v; want 0", got)
	}
	families, err := a.Registry.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if !strings.HasPrefix(f.GetName(), "sqsworker_") && !strings.HasPrefix(f.GetName(), "go_") &&
			!strings.HasPrefix(f.GetName(), "process_") {
			t.Errorf("metric %s lacks the sqsworker_ prefix", f.GetName())
		}
	}
	for _, want := range []string{
		"sqsworker_messages_received_total", "sqsworker_messages_processed_total",
		"sqsworker_messages_in_flight", "sqsworker_leases_lost_total", "sqsworker_messages_deleted_total",
	} {
		if !names[want] {
			t.Errorf("registry lacks %s", want)
		}
	}
}

func TestOutcomesStartAtZero(t *testing.T) {
	t.Parallel()
	m := New()
	ch := make(chan prometheus.Metric, 16)
	m.MessagesProcessed.Collect(ch)
	close(ch)
	n := 0
	for range ch {
		n++
	}
	if n != 7 {
		t.Errorf("%d outcome series before any message; want all 7 exported at 0", n)
	}
}

func TestObserveRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		calls   [][2]string
		action  string
		outcome string
		want    float64
	}{
		{name: "one ok", calls: [][2]string{{"ReceiveMessage", "ok"}}, action: "ReceiveMessage", outcome: "ok", want: 1},
		{name: "by outcome", calls: [][2]string{{"DeleteMessageBatch", "ok"}, {"DeleteMessageBatch", "throttled"}, {"DeleteMessageBatch", "throttled"}}, action: "DeleteMessageBatch", outcome: "throttled", want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := New()
			for _, c := range tt.calls {
				m.ObserveRequest(c[0], c[1], 5*time.Millisecond)
			}
			if got := testkit.Value(m.SQSRequests.WithLabelValues(tt.action, tt.outcome)); got != tt.want {
				t.Errorf("requests{%s,%s} = %v; want %v", tt.action, tt.outcome, got, tt.want)
			}
			var pb dto.Metric
			if err := m.SQSRequestDuration.WithLabelValues(tt.action).(prometheus.Metric).Write(&pb); err != nil {
				t.Fatal(err)
			}
			if got := pb.GetHistogram().GetSampleCount(); got != uint64(len(tt.calls)) {
				t.Errorf("duration samples = %d; want %d", got, len(tt.calls))
			}
		})
	}
}
