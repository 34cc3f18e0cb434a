package sqsworker

import (
	"strings"
	"time"

	"github.com/sqsworker/sqsworker/internal/config"
)

// Config tunes a Worker. The zero value means the documented default of
// every field; where 0 is a meaningful setting that is not the default, a
// negative value stands for it.
type Config struct {
	// Concurrency is how many handlers run at once, 1 to 10000.
	// Defaults to 16.
	Concurrency int
	// Prefetch is how many received messages may wait for a free handler
	// beyond Concurrency; their leases are kept alive meanwhile.
	// Defaults to as many as Concurrency; negative means none.
	Prefetch int
	// Fetchers pins how many ReceiveMessage long polls run at once.
	// Defaults to 0: one while the queue is idle, more while receives
	// come back full, up to enough to fill Concurrency plus Prefetch.
	Fetchers int
	// WaitTime is the long-poll wait of each ReceiveMessage, in whole
	// seconds up to 20s. Defaults to 20s; negative means 0 (short polls).
	WaitTime time.Duration
	// VisibilityTimeout is the lease asked for on receive, in whole
	// seconds, and the smallest extension the heartbeat asks for.
	// Defaults to 30s.
	VisibilityTimeout time.Duration
	// MaxExtension is the longest single lease extension; extensions
	// follow the 99th percentile of handler time. Defaults to 10m.
	MaxExtension time.Duration
	// MaxProcessingTime is how long a message may be kept invisible in
	// all; its lease is not extended after that. Defaults to 12h, SQS's
	// limit.
	MaxProcessingTime time.Duration
	// HandlerTimeout cancels a handler's context after this long.
	// Defaults to no timeout but MaxProcessingTime.
	HandlerTimeout time.Duration
	// DeleteFlushInterval is how long an acknowledgement may wait for
	// nine others to share a DeleteMessageBatch. Defaults to 10ms.
	DeleteFlushInterval time.Duration
	// RetryBackoffMin is the delay before a failed message is visible
	// again after its first receive; it doubles with each receive.
	// Defaults to 1s; negative means 0.
	RetryBackoffMin time.Duration
	// RetryBackoffMax caps that delay. Defaults to 15m.
	RetryBackoffMax time.Duration
	// ShutdownTimeout is how long Stop lets running handlers finish
	// before it cancels them. Defaults to 30s.
	ShutdownTimeout time.Duration
	// IdleTimeout, when positive, stops the worker gracefully once no
	// message was received for this long. Defaults to never.
	IdleTimeout time.Duration
	// MaxMessages, when positive, stops receiving after this many
	// messages; the worker finishes them and stops. Defaults to no limit.
	MaxMessages int
	// QueueStatsInterval is how often the queue's and its dead-letter
	// queue's message counts are read into the metrics. Defaults to 15s
	// with WithRegisterer, else never; negative means never.
	QueueStatsInterval time.Duration
	// DeadLetterQueueURL is the dead-letter queue whose counts are read.
	// Defaults to the one the queue's redrive policy names.
	DeadLetterQueueURL string
	// Downstream protects what the handler calls.
	Downstream DownstreamConfig
}

// DownstreamConfig tunes how the worker protects the handler's
// downstream: a circuit breaker that holds messages through an outage, an
// adaptive concurrency limit, and a rate limit. Failures count as the
// downstream's when the handler returns Unavailable or Overloaded.
type DownstreamConfig struct {
	// DisableBreaker turns the circuit breaker off: downstream failures
	// are retried like any other. Defaults to false.
	DisableBreaker bool
	// BreakerMinFailures and BreakerFailureRate: the breaker opens after
	// BreakerMinFailures downstream failures in a row, or when within
	// BreakerWindow at least that many failed and they were at least
	// BreakerFailureRate of the calls that ended. Default to 10, 0.5 and
	// 10s.
	BreakerMinFailures int
	BreakerFailureRate float64
	BreakerWindow      time.Duration
	// BreakerMaxProbeInterval caps the wait between probes of a failing
	// downstream, which starts at 1s and doubles. Defaults to 15s.
	BreakerMaxProbeInterval time.Duration
	// HealthURL, when set, is probed (GET, 2xx is healthy) instead of a
	// held message, and must answer before the first receive.
	HealthURL string
	// DisableAdaptiveConcurrency pins the handlers running at once to
	// Concurrency; otherwise the limit is lowered while the downstream is
	// overloaded and raised back while calls succeed. Defaults to false.
	DisableAdaptiveConcurrency bool
	// MaxRate, when positive, caps handler starts per second, in bursts
	// of MaxRateBurst. Default to no cap and 1.
	MaxRate      float64
	MaxRateBurst int
}

// pipeline is c with the defaults filled in, for queue (a URL or a name).
// metrics says whether the worker's metrics are registered anywhere.
func (c *Config) pipeline(queue string, metrics bool) config.Pipeline {
	p := config.DefaultPipeline()
	if strings.HasPrefix(queue, "https://") || strings.HasPrefix(queue, "http://") {
		p.QueueURL = queue
	} else {
		p.Queue = queue
	}
	if !metrics {
		p.QueueStatsInterval = 0
	}
	p.Concurrency = or(c.Concurrency, p.Concurrency)
	p.Fetchers = or(c.Fetchers, p.Fetchers)
	p.Prefetch = orNone(c.Prefetch, p.Prefetch)
	p.WaitTime = orNone(c.WaitTime, p.WaitTime)
	p.VisibilityTimeout = or(c.VisibilityTimeout, p.VisibilityTimeout)
	p.MaxExtension = or(c.MaxExtension, p.MaxExtension)
	p.MaxProcessingTime = or(c.MaxProcessingTime, p.MaxProcessingTime)
	p.HandlerTimeout = or(c.HandlerTimeout, p.HandlerTimeout)
	p.DeleteFlushInterval = or(c.DeleteFlushInterval, p.DeleteFlushInterval)
	p.RetryBackoffMin = orNone(c.RetryBackoffMin, p.RetryBackoffMin)
	p.RetryBackoffMax = or(c.RetryBackoffMax, p.RetryBackoffMax)
	p.ShutdownTimeout = or(c.ShutdownTimeout, p.ShutdownTimeout)
	p.IdleTimeout = or(c.IdleTimeout, p.IdleTimeout)
	p.MaxMessages = or(c.MaxMessages, p.MaxMessages)
	p.QueueStatsInterval = orNone(c.QueueStatsInterval, p.QueueStatsInterval)
	p.DLQURL = c.DeadLetterQueueURL

	d, cd := &p.Downstream, c.Downstream
	d.Breaker = !cd.DisableBreaker
	d.BreakerMinFailures = or(cd.BreakerMinFailures, d.BreakerMinFailures)
	d.BreakerFailureRate = or(cd.BreakerFailureRate, d.BreakerFailureRate)
	d.BreakerWindow = or(cd.BreakerWindow, d.BreakerWindow)
	d.BreakerMaxProbeInterval = or(cd.BreakerMaxProbeInterval, d.BreakerMaxProbeInterval)
	d.HealthURL = cd.HealthURL
	d.AdaptiveConcurrency = !cd.DisableAdaptiveConcurrency
	d.MaxRate = or(cd.MaxRate, d.MaxRate)
	d.MaxRateBurst = or(cd.MaxRateBurst, d.MaxRateBurst)
	return p
}

// or is v, or def when v is zero: a field left out takes its default.
// Any other value, however wrong, is kept for validation to name.
func or[T int | time.Duration | float64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// orNone is or for the fields where 0 is a setting of its own, which a
// negative value stands for.
func orNone[T int | time.Duration](v, def T) T {
	if v < 0 {
		return 0
	}
	return or(v, def)
}
