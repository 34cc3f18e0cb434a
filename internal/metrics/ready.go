package metrics

import "github.com/prometheus/client_golang/prometheus"

// SetReady sets what sqsworker_ready reports: 1 while ready() is true.
// Until it is called the gauge reads 0.
func (m *Metrics) SetReady(ready func() bool) { m.ready.Store(&ready) }

// readyGauge is sqsworker_ready: what /readyz answers, read at each
// scrape, so that an alert can say a replica has not received for a while
// without probing it.
func (m *Metrics) readyGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sqsworker_ready",
		Help: "1 while /readyz answers 200 (the last receive succeeded within the wait time plus 30s), else 0.",
	}, func() float64 {
		if f := m.ready.Load(); f != nil && (*f)() {
			return 1
		}
		return 0
	})
}
