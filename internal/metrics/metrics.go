// Package metrics owns the worker's Prometheus collectors, on a registry of
// its own, and the HTTP server that exposes them with /healthz and /readyz.
package metrics

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// Outcomes of one handled message, the values of the outcome label.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomePanic   = "panic"
	OutcomeTimeout = "timeout"
	// OutcomeLost: the handler finished but the lease was lost first, so
	// the message was not deleted.
	OutcomeLost = "lost"
	// OutcomeReleased: never started (shutdown) or cancelled by a forced
	// shutdown; made visible again at once.
	OutcomeReleased = "released"
	// OutcomeDeadLettered: the handler said it can never succeed; the
	// worker sent it to the dead-letter queue and deleted it.
	OutcomeDeadLettered = "dead_lettered"
)

// Metrics holds every collector. Create it with New or NewFor; all
// fields are safe for concurrent use.
type Metrics struct {
	// Registry is the registry New made, with the Go and process
	// collectors; nil from NewFor.
	Registry *prometheus.Registry

	MessagesReceived     prometheus.Counter
	MessagesProcessed    *prometheus.CounterVec
	HandlerDuration      prometheus.Histogram
	MessagesInFlight     prometheus.Gauge
	MessagesBuffered     prometheus.Gauge
	HandlersRunning      prometheus.Gauge
	HandlersHung         prometheus.Gauge
	SQSRequests          *prometheus.CounterVec
	SQSRequestDuration   *prometheus.HistogramVec
	VisibilityExtensions prometheus.Counter
	ExtensionBatches     prometheus.Counter
	ExtensionSeconds     prometheus.Gauge
	HeartbeatRounds      prometheus.Counter
	LeasesLost           prometheus.Counter
	MessagesReleased     prometheus.Counter
	MessagesRetried      prometheus.Counter
	MessagesDeleted      prometheus.Counter
	DeleteFailures       *prometheus.CounterVec
	DeleteBatchSize      prometheus.Histogram
	ReceiveEmpty         prometheus.Counter
	ReceiveBatchSize     prometheus.Histogram
	ReceivePolls         prometheus.Gauge
	QueueMessages        *prometheus.GaugeVec
	MessageAge           prometheus.Histogram
	ReceivesOrphaned     prometheus.Counter
	ReceivesCancelled    prometheus.Counter

	// Downstream protection: the breaker, the adaptive limit, the rate
	// limit, and messages dead-lettered by the worker.
	DownstreamState      prometheus.Gauge
	DownstreamFailures   *prometheus.CounterVec
	ConcurrencyLimit     prometheus.Gauge
	MessagesHeld         prometheus.Gauge
	RateLimitWaits       prometheus.Counter
	MessagesDeadLettered *prometheus.CounterVec

	ready atomic.Pointer[func() bool] // what sqsworker_ready reads, set by SetReady
}

// States of a queue's messages, the values of QueueMessages' state label.
const (
	StateVisible  = "visible"
	StateInFlight = "in_flight"
	StateDelayed  = "delayed"
)

// New creates the collectors and registers them, with the Go and process
// collectors, on a new registry: what a program that serves them itself
// uses.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := NewFor(reg)
	if err != nil {
		panic(err) // a new registry has nothing to collide with
	}
	m.Registry = reg
	return m
}

// NewFor creates the collectors and registers them on reg, or nowhere when
// reg is nil: they count all the same, for Totals and for tests that read
// them. It fails if reg already has collectors of the same names.
func NewFor(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		MessagesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_messages_received_total",
			Help: "Messages received from SQS.",
		}),
		MessagesProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqsworker_messages_processed_total",
			Help: "Messages whose handling ended, by outcome (success, failure, panic, timeout, lost, released, dead_lettered).",
		}, []string{"outcome"}),
		HandlerDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sqsworker_handler_duration_seconds",
			Help:    "Time the handler took per message; each message of a batch counts its batch's call.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}),
		MessagesInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_messages_in_flight",
			Help: "Messages this worker holds a lease on (buffered, running or awaiting delete).",
		}),
		MessagesBuffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_messages_buffered",
			Help: "Received messages waiting for a free handler.",
		}),
		HandlersRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_handlers_running",
			Help: "Messages whose handler is running now; a batch's call counts each of its messages.",
		}),
		HandlersHung: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_handlers_hung",
			Help: "Handlers that ignored their cancellation and still run; their messages were retried, their slots stay busy.",
		}),
		SQSRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqsworker_sqs_requests_total",
			Help: "SQS API requests sent (each attempt counts: SQS bills each), by action and outcome (ok, error, throttled).",
		}, []string{"action", "outcome"}),
		SQSRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sqsworker_sqs_request_duration_seconds",
			Help:    "Duration of SQS API requests, by action.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"action"}),
		VisibilityExtensions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_visibility_extensions_total",
			Help: "Leases extended by the heartbeat (one per message per extension).",
		}),
		ExtensionSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_visibility_extension_seconds",
			Help: "What the heartbeat extends a lease by now: the p99 handler time, within the visibility timeout asked on receive and the longest extension allowed.",
		}),
		HeartbeatRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_heartbeat_rounds_total",
			Help: "Heartbeat rounds that extended at least one lease.",
		}),
		ExtensionBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_visibility_extension_batches_total",
			Help: "ChangeMessageVisibilityBatch calls sent by the heartbeat.",
		}),
		LeasesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_leases_lost_total",
			Help: "Leases lost (receipt handle no longer valid, or expired before it could be extended); their handlers are cancelled and the messages are not deleted.",
		}),
		MessagesReleased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_messages_released_total",
			Help: "Messages made visible again at once (visibility 0) without being handled to the end.",
		}),
		MessagesRetried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_messages_retried_total",
			Help: "Failed messages given a retry delay.",
		}),
		MessagesDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_messages_deleted_total",
			Help: "Messages whose delete SQS confirmed.",
		}),
		DeleteFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqsworker_delete_failures_total",
			Help: "DeleteMessageBatch entries that failed, by code.",
		}, []string{"code"}),
		DeleteBatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sqsworker_delete_batch_size",
			Help:    "Entries per DeleteMessageBatch call.",
			Buckets: prometheus.LinearBuckets(1, 1, 10),
		}),
		ReceiveEmpty: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_receive_empty_total",
			Help: "ReceiveMessage calls that returned no message.",
		}),
		ReceiveBatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sqsworker_receive_batch_size",
			Help:    "Messages per non-empty ReceiveMessage call.",
			Buckets: prometheus.LinearBuckets(1, 1, 10),
		}),
		ReceivePolls: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_receive_polls",
			Help: "Long polls the worker keeps going at once: pinned by --fetchers, else adapted between 1 and what the in-flight limit can use.",
		}),
		QueueMessages: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sqsworker_queue_messages",
			Help: "SQS's approximate count of the queue's and its dead-letter queue's messages, by state (visible, in_flight, delayed), read on --queue-stats-interval. Every replica reports the same queue: aggregate with max, not sum.",
		}, []string{"queue", "state"}),
		MessageAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sqsworker_message_age_seconds",
			Help:    "Age of each received message: from SQS's SentTimestamp to its receive.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 4 * 86400, 14 * 86400},
		}),
		ReceivesOrphaned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_receives_orphaned_total",
			Help: "ReceiveMessage calls whose response was lost after SQS answered: the messages SQS handed out (up to the number asked for) stay invisible until their visibility timeout ends.",
		}),
		ReceivesCancelled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_receives_cancelled_total",
			Help: "Long polls cancelled at shutdown while still waiting (on an idle queue, after a short grace; or by a forced stop or the shutdown deadline). A message SQS handed to a cancelled poll is not lost: it becomes visible again after the visibility timeout, its receive count one higher.",
		}),
		DownstreamState: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_downstream_state",
			Help: "What the circuit breaker holds of the handler's downstream: 0 healthy, 1 probing, 2 failing (receives paused, messages in hand held).",
		}),
		DownstreamFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqsworker_downstream_failures_total",
			Help: "Handler calls that failed for the downstream's reasons, by kind (unavailable: refused, 502, 504, timeout; overloaded: 429, 503, the exec overload exit code).",
		}, []string{"kind"}),
		ConcurrencyLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_concurrency_limit",
			Help: "Handlers that may run at once now: --concurrency, lowered while the downstream asks to slow down or fails, raised again while calls succeed.",
		}),
		MessagesHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqsworker_messages_held",
			Help: "Messages kept in hand, their leases kept alive, while the downstream is failing: not handed back to SQS, where each receive counts toward the dead-letter queue.",
		}),
		RateLimitWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqsworker_rate_limit_waits_total",
			Help: "Handler starts held back by --max-rate.",
		}),
		MessagesDeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqsworker_messages_dead_lettered_total",
			Help: "Messages the worker sent to the dead-letter queue itself because the handler said they can never succeed, by reason.",
		}, []string{"reason"}),
	}
	all := []prometheus.Collector{
		m.readyGauge(),
		m.MessagesReceived, m.MessagesProcessed, m.HandlerDuration,
		m.MessagesInFlight, m.MessagesBuffered, m.HandlersRunning, m.HandlersHung,
		m.SQSRequests, m.SQSRequestDuration,
		m.VisibilityExtensions, m.ExtensionBatches, m.ExtensionSeconds, m.HeartbeatRounds, m.LeasesLost,
		m.MessagesReleased, m.MessagesRetried, m.MessagesDeleted,
		m.DeleteFailures, m.DeleteBatchSize, m.ReceiveEmpty, m.ReceiveBatchSize, m.ReceivePolls,
		m.QueueMessages, m.MessageAge, m.ReceivesOrphaned, m.ReceivesCancelled,
		m.DownstreamState, m.DownstreamFailures, m.ConcurrencyLimit, m.MessagesHeld, m.RateLimitWaits, m.MessagesDeadLettered,
	}
	if reg != nil {
		for _, c := range all {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register the worker's metrics: %w (two workers on one registry need a label apart: prometheus.WrapRegistererWith)", err)
			}
		}
	}
	for _, k := range []string{"unavailable", "overloaded"} {
		m.DownstreamFailures.WithLabelValues(k)
	}
	for _, o := range []string{OutcomeSuccess, OutcomeFailure, OutcomePanic, OutcomeTimeout, OutcomeLost, OutcomeReleased, OutcomeDeadLettered} {
		m.MessagesProcessed.WithLabelValues(o)
	}
	return m, nil
}

// ObserveRequest records one SQS request attempt (sqsapi.Observer).
func (m *Metrics) ObserveRequest(action, outcome string, d time.Duration) {
	m.SQSRequests.WithLabelValues(action, outcome).Inc()
	m.SQSRequestDuration.WithLabelValues(action).Observe(d.Seconds())
}

// Totals is what a worker did, for the line it logs at exit.
type Totals struct {
	SQSRequests, Received, Succeeded, Failed float64
}

// Totals sums the counters behind Totals.
func (m *Metrics) Totals() Totals {
	var t Totals
	t.SQSRequests = Sum(m.SQSRequests)
	t.Received = Sum(m.MessagesReceived)
	t.Succeeded = Sum(m.MessagesProcessed.WithLabelValues(OutcomeSuccess))
	for _, o := range []string{OutcomeFailure, OutcomePanic, OutcomeTimeout} {
		t.Failed += Sum(m.MessagesProcessed.WithLabelValues(o))
	}
	return t
}

// Sum is the sum of c's counters and gauges over all label values.
func Sum(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	total := 0.0
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		switch {
		case d.Counter != nil:
			total += d.Counter.GetValue()
		case d.Gauge != nil:
			total += d.Gauge.GetValue()
		}
	}
	return total
}

// ObserveMessageAge records a received message's age; a message without
// a SentTimestamp is not counted, and one SQS stamped ahead of our clock counts
// as age 0.
func (m *Metrics) ObserveMessageAge(sentAt, receivedAt time.Time) {
	if !sentAt.IsZero() {
		m.MessageAge.Observe(max(0, receivedAt.Sub(sentAt).Seconds()))
	}
}
