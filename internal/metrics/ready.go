package metrics

import "github.com/prometheus/client_golang/prometheus"

// exportReady adds sqsworker_ready to m's registry: what /readyz answers,
// read at each scrape, so that an alert can say a replica has not received
// for a while without probing it.
func (m *Metrics) exportReady(h *Health) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sqsworker_ready",
		Help: "1 while /readyz answers 200 (the last receive succeeded within the wait time plus 30s), else 0.",
	}, func() float64 {
		if ok, _ := h.Ready(); ok {
			return 1
		}
		return 0
	}))
}
