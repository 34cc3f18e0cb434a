package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestMessageAge(t *testing.T) {
	t.Parallel()
	m := New()
	now := time.Now()
	m.ObserveMessageAge(now.Add(-90*time.Second), now)
	m.ObserveMessageAge(now.Add(time.Second), now) // SQS's clock ahead of ours
	m.ObserveMessageAge(time.Time{}, now)          // no SentTimestamp
	var pb dto.Metric
	if err := m.MessageAge.Write(&pb); err != nil {
		t.Fatal(err)
	}
	h := pb.GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 90 {
		t.Errorf("%d ages summing to %v s, want 2 summing to 90", h.GetSampleCount(), h.GetSampleSum())
	}
}
