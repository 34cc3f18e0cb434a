package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sqsworker/sqsworker/internal/downstream"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// Pipeline is the settings of the pipeline itself — the queue, how much
// runs at once, leases, retries, downstream protection, when to stop —
// with explicit values (Default fills them in). The public package's
// Config is turned into one of these.
type Pipeline struct {
	// QueueURL is the queue to consume. Either it or Queue is required,
	// not both.
	QueueURL string
	// Queue is the name of the queue to consume, resolved with GetQueueUrl.
	Queue string
	// Concurrency is how many handlers run at once. Defaults to 16.
	Concurrency int
	// Fetchers pins how many ReceiveMessage long polls run at once; 0
	// adapts their number between 1 and MaxFetchers(): more while
	// receives come back full, fewer while they come back empty.
	// Defaults to 0.
	Fetchers int
	// Prefetch is how many received messages may wait for a free handler
	// beyond Concurrency; -1 means as many as Concurrency.
	// Defaults to DefaultPrefetch (-1).
	Prefetch int
	// WaitTime is the long-poll wait of each ReceiveMessage (0–20s).
	// Defaults to 20s.
	WaitTime time.Duration
	// VisibilityTimeout is the lease asked for on receive and the smallest
	// extension the heartbeat asks for. Defaults to 30s.
	VisibilityTimeout time.Duration
	// MaxExtension is the longest single extension the heartbeat asks for.
	// Defaults to 10m.
	MaxExtension time.Duration
	// MaxProcessingTime is how long a message may be kept invisible in
	// total; heartbeats stop after it. Defaults to 12h (SQS's limit).
	MaxProcessingTime time.Duration
	// HandlerTimeout cancels a handler's context after this long; 0 means
	// no timeout besides MaxProcessingTime. Defaults to 0.
	HandlerTimeout time.Duration
	// DeleteFlushInterval is how long an acknowledgement may wait for nine
	// others before its DeleteMessageBatch is sent. Defaults to 10ms.
	DeleteFlushInterval time.Duration
	// RetryBackoffMin and RetryBackoffMax bound the delay before a failed
	// message is visible again; it doubles with each receive.
	// Default to 1s and 15m.
	RetryBackoffMin time.Duration
	RetryBackoffMax time.Duration

	// Downstream is how the worker protects what the handler calls.
	Downstream Downstream

	// IdleTimeout, when positive, stops the worker (gracefully, exit 0)
	// once no message was received for this long. Defaults to 0: never.
	IdleTimeout time.Duration
	// MaxMessages, when positive, stops receiving after this many
	// messages; the worker finishes them and stops. Defaults to 0: no
	// limit.
	MaxMessages int

	// QueueStatsInterval is how often the queue's and its dead-letter
	// queue's counts are read into the metrics; 0 turns that off.
	// Defaults to 15s.
	QueueStatsInterval time.Duration
	// DLQURL is the dead-letter queue whose counts are read; empty means
	// the one the queue's redrive policy names.
	DLQURL string
	// ShutdownTimeout is how long running handlers may take after SIGTERM.
	// Defaults to 30s.
	ShutdownTimeout time.Duration
}

// Downstream configures the protection of the handler's downstream: the
// circuit breaker that holds messages through an outage, the adaptive
// concurrency limit, and the rate limit.
type Downstream struct {
	// Breaker turns the circuit breaker on. Defaults to true.
	Breaker bool
	// BreakerFailureRate and BreakerMinFailures: the breaker opens after
	// BreakerMinFailures calls in a row failed for the downstream's
	// reasons (refused, 502, 503, 504, 429 at a limit of one, timeouts),
	// or when, within BreakerWindow, at least that many did and they were
	// at least BreakerFailureRate of the calls that ended. Default to 0.5,
	// 10 and 10s.
	BreakerFailureRate float64
	BreakerMinFailures int
	BreakerWindow      time.Duration
	// BreakerMaxProbeInterval caps the wait between probes of a failing
	// downstream, which starts at 1s and doubles. Defaults to 15s.
	BreakerMaxProbeInterval time.Duration
	// HealthURL, when set, is probed (GET, 2xx) instead of a held message,
	// and must answer before the first receive.
	HealthURL string
	// AdaptiveConcurrency lowers the number of handlers running at once
	// while the downstream asks to slow down, and raises it back to
	// Concurrency while calls succeed. Defaults to true.
	AdaptiveConcurrency bool
	// MaxRate, when positive, caps handler starts per second, with bursts
	// of MaxRateBurst. Default to 0 (no cap) and 1.
	MaxRate      float64
	MaxRateBurst int
}

// DefaultPipeline returns a Pipeline with every default filled in.
func DefaultPipeline() Pipeline {
	return Pipeline{
		Concurrency:         DefaultConcurrency,
		Fetchers:            DefaultFetchers,
		Prefetch:            DefaultPrefetch,
		WaitTime:            DefaultWaitTime,
		VisibilityTimeout:   DefaultVisibilityTimeout,
		MaxExtension:        DefaultMaxExtension,
		MaxProcessingTime:   DefaultMaxProcessingTime,
		DeleteFlushInterval: DefaultDeleteFlushInterval,
		RetryBackoffMin:     DefaultRetryBackoffMin,
		RetryBackoffMax:     DefaultRetryBackoffMax,
		Downstream: Downstream{
			Breaker: true, BreakerFailureRate: downstream.DefaultFailureRate, BreakerMinFailures: downstream.DefaultMinFailures,
			BreakerWindow: downstream.DefaultWindow, BreakerMaxProbeInterval: downstream.DefaultMaxProbeInterval,
			AdaptiveConcurrency: true, MaxRateBurst: 1,
		},
		QueueStatsInterval: DefaultQueueStatsInterval,
		ShutdownTimeout:    DefaultShutdownTimeout,
	}
}

// FIFO reports whether the queue is a FIFO queue (its name ends in .fifo).
func (c *Pipeline) FIFO() bool {
	return strings.HasSuffix(c.QueueURL, ".fifo") || strings.HasSuffix(c.Queue, ".fifo")
}

// Validate checks every field and returns the first problem, a
// *FieldError naming the field and what it accepts. It changes nothing.
func (c *Pipeline) Validate() error {
	if c.QueueURL == "" && c.Queue == "" {
		return &FieldError{Field: "QueueURL", Or: []string{"Queue"}, Msg: "is required: the queue to consume"}
	}
	if c.QueueURL != "" && c.Queue != "" {
		return &FieldError{Field: "QueueURL", Or: []string{"Queue"}, Msg: fmt.Sprintf("names the queue, not both (%s and %s): keep one", c.QueueURL, c.Queue)}
	}
	if c.QueueURL != "" {
		u, err := url.Parse(c.QueueURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(strings.Trim(u.Path, "/")) == 0 {
			return invalid("QueueURL", "%q is not a queue URL: want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME", c.QueueURL)
		}
	}
	checks := []struct {
		field     string
		v, lo, hi int
	}{
		{"Concurrency", c.Concurrency, 1, MaxConcurrency},
		{"Fetchers", c.Fetchers, 0, 1000},
		{"Prefetch", c.Prefetch, DefaultPrefetch, 100000},
		{"MaxMessages", c.MaxMessages, 0, 1 << 40},
	}
	for _, ck := range checks {
		if ck.v < ck.lo || ck.v > ck.hi {
			return invalid(ck.field, "is %d: it must be between %d and %d", ck.v, ck.lo, ck.hi)
		}
	}
	durs := []struct {
		field     string
		v, lo, hi time.Duration
	}{
		{"WaitTime", c.WaitTime, 0, sqsapi.MaxWaitTime},
		{"VisibilityTimeout", c.VisibilityTimeout, 2 * time.Second, sqsapi.MaxVisibility},
		{"MaxExtension", c.MaxExtension, c.VisibilityTimeout, sqsapi.MaxVisibility},
		{"MaxProcessingTime", c.MaxProcessingTime, c.VisibilityTimeout, sqsapi.MaxVisibility},
		{"HandlerTimeout", c.HandlerTimeout, 0, sqsapi.MaxVisibility},
		{"DeleteFlushInterval", c.DeleteFlushInterval, time.Millisecond, 10 * time.Second},
		{"RetryBackoffMin", c.RetryBackoffMin, 0, sqsapi.MaxVisibility},
		{"RetryBackoffMax", c.RetryBackoffMax, c.RetryBackoffMin, sqsapi.MaxVisibility},
		{"ShutdownTimeout", c.ShutdownTimeout, time.Second, time.Hour},
		{"IdleTimeout", c.IdleTimeout, 0, 365 * 24 * time.Hour},
		{"QueueStatsInterval", c.QueueStatsInterval, 0, 24 * time.Hour},
	}
	for _, d := range durs {
		if d.v < d.lo || d.v > d.hi {
			return invalid(d.field, "is %s: it must be between %s and %s", d.v, d.lo, d.hi)
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"WaitTime", c.WaitTime}, {"VisibilityTimeout", c.VisibilityTimeout}} {
		if d.v%time.Second != 0 {
			return invalid(d.field, "is %s: it must be whole seconds (SQS counts in seconds)", d.v)
		}
	}
	if err := c.Downstream.validate(); err != nil {
		return err
	}
	return nil
}

func (d *Downstream) validate() error {
	switch {
	case d.BreakerFailureRate <= 0 || d.BreakerFailureRate > 1:
		return invalid("BreakerFailureRate", "is %g: it must be above 0 and at most 1", d.BreakerFailureRate)
	case d.BreakerMinFailures < 1 || d.BreakerMinFailures > 100000:
		return invalid("BreakerMinFailures", "is %d: it must be between 1 and 100000", d.BreakerMinFailures)
	case d.BreakerWindow < time.Second || d.BreakerWindow > time.Hour:
		return invalid("BreakerWindow", "is %s: it must be between 1s and 1h", d.BreakerWindow)
	case d.BreakerMaxProbeInterval < time.Second || d.BreakerMaxProbeInterval > time.Hour:
		return invalid("BreakerMaxProbeInterval", "is %s: it must be between 1s and 1h", d.BreakerMaxProbeInterval)
	case d.MaxRate < 0 || d.MaxRate > 1e6:
		return invalid("MaxRate", "is %g: it must be between 0 (no limit) and 1000000 starts a second", d.MaxRate)
	case d.MaxRateBurst < 1 || d.MaxRateBurst > 100000:
		return invalid("MaxRateBurst", "is %d: it must be between 1 and 100000", d.MaxRateBurst)
	}
	if d.HealthURL != "" {
		u, err := url.Parse(d.HealthURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("HealthURL", "is not an http(s) URL")
		}
	}
	return nil
}

// PrefetchOrDefault is Prefetch, or Concurrency when Prefetch is -1.
func (c *Pipeline) PrefetchOrDefault() int {
	if c.Prefetch < 0 {
		return c.Concurrency
	}
	return c.Prefetch
}

// MaxFetchers is the most long polls the worker keeps going: Fetchers
// when pinned, else enough to fill the in-flight limit in one round (ten
// messages a poll).
func (c *Pipeline) MaxFetchers() int {
	if c.Fetchers > 0 {
		return c.Fetchers
	}
	return max(1, (c.InFlightLimit()+9)/10)
}

// InFlightLimit is how many leases the worker may hold at once.
func (c *Pipeline) InFlightLimit() int { return c.Concurrency + c.PrefetchOrDefault() }
