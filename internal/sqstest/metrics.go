package sqstest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a worker's /metrics, by family name.
type Metrics map[string]*dto.MetricFamily

// ParseMetrics reads the Prometheus text format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse the worker's metrics: %w", err)
	}
	return families, nil
}

// Scrape reads the metrics served at addr (host:port)/metrics.
func Scrape(ctx context.Context, addr string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape the worker's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape the worker's metrics: %s", resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// Value adds up family name's series whose labels include every one of
// labels, given as name, value pairs: counters and gauges by value,
// histograms and summaries by their count of observations. It is 0 for a
// family the scrape does not have.
func (m Metrics) Value(name string, labels ...string) float64 {
	if len(labels)%2 != 0 {
		panic(fmt.Sprintf("Metrics.Value(%q, %q): labels must be name, value pairs", name, labels))
	}
	total := 0.0
	for _, s := range m[name].GetMetric() {
		if !hasLabels(s, labels) {
			continue
		}
		switch {
		case s.Counter != nil:
			total += s.Counter.GetValue()
		case s.Gauge != nil:
			total += s.Gauge.GetValue()
		case s.Untyped != nil:
			total += s.Untyped.GetValue()
		case s.Histogram != nil:
			total += float64(s.Histogram.GetSampleCount())
		case s.Summary != nil:
			total += float64(s.Summary.GetSampleCount())
		}
	}
	return total
}

func hasLabels(s *dto.Metric, pairs []string) bool {
	for i := 0; i < len(pairs); i += 2 {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
