// Package config owns the worker's Config: every knob, its documented
// default, and the validation that names the flag and its allowed range.
package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Defaults. Each is the value a field takes when it is left zero.
const (
	DefaultConcurrency         = 16
	DefaultFetchers            = 2
	DefaultWaitTime            = 20 * time.Second
	DefaultVisibilityTimeout   = 30 * time.Second
	DefaultMaxExtension        = 10 * time.Minute
	DefaultMaxProcessingTime   = 12 * time.Hour
	DefaultDeleteFlushInterval = 10 * time.Millisecond
	DefaultRetryBackoffMin     = 1 * time.Second
	DefaultRetryBackoffMax     = 15 * time.Minute
	DefaultHTTPTimeout         = 60 * time.Second
	DefaultShutdownTimeout     = 30 * time.Second
	DefaultMetricsAddr         = ":9090"
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "json"
	DefaultHandler             = "http"

	// MaxVisibility is SQS's limit on a message's visibility: 12 hours
	// since it was first received.
	MaxVisibility = 12 * time.Hour
	// MaxWaitTime is SQS's limit on a long poll.
	MaxWaitTime = 20 * time.Second
)

// Config is everything `worker run` needs. Flags and environment variables
// map one-to-one onto its fields (--concurrency / SQSWORKER_CONCURRENCY).
type Config struct {
	// QueueURL is the queue to consume. Either it or Queue is required.
	QueueURL string
	// Queue is a queue name resolved with GetQueueUrl when QueueURL is empty.
	Queue string
	// EndpointURL overrides the SQS endpoint. Defaults to the SDK's own
	// resolution (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, AWS_REGION).
	EndpointURL string
	// Region overrides AWS_REGION. Defaults to the SDK's resolution.
	Region string

	// Concurrency is how many handlers run at once. Defaults to 16.
	Concurrency int
	// Fetchers is how many ReceiveMessage long polls run at once.
	// Defaults to 2.
	Fetchers int
	// Prefetch is how many received messages may wait for a free handler
	// beyond Concurrency; negative means as many as Concurrency.
	// Defaults to -1.
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

	// Handler is "http" or "exec". Defaults to http.
	Handler string
	// HTTPURL is where the http handler POSTs each body.
	HTTPURL string
	// HTTPTimeout bounds one http handler request. Defaults to 60s.
	HTTPTimeout time.Duration
	// Exec is the command (argv, no shell) the exec handler runs.
	Exec []string
	// handlerInCode skips the handler checks; see ValidateWithHandler.
	handlerInCode bool
	// UnwrapSNS makes the handler see the inner message of SNS envelopes.
	UnwrapSNS bool

	// MetricsAddr is where /metrics, /healthz and /readyz are served;
	// empty disables the server. Defaults to :9090.
	MetricsAddr string
	// Pprof also serves net/http/pprof's /debug/pprof/ on MetricsAddr.
	Pprof bool
	// ShutdownTimeout is how long running handlers may take after SIGTERM.
	// Defaults to 30s.
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error. Defaults to info.
	LogLevel string
	// LogFormat is json or console. Defaults to json.
	LogFormat string
}

// Default returns a Config with every default filled in.
func Default() Config {
	return Config{
		Concurrency:         DefaultConcurrency,
		Fetchers:            DefaultFetchers,
		Prefetch:            -1,
		WaitTime:            DefaultWaitTime,
		VisibilityTimeout:   DefaultVisibilityTimeout,
		MaxExtension:        DefaultMaxExtension,
		MaxProcessingTime:   DefaultMaxProcessingTime,
		DeleteFlushInterval: DefaultDeleteFlushInterval,
		RetryBackoffMin:     DefaultRetryBackoffMin,
		RetryBackoffMax:     DefaultRetryBackoffMax,
		Handler:             DefaultHandler,
		HTTPTimeout:         DefaultHTTPTimeout,
		MetricsAddr:         DefaultMetricsAddr,
		ShutdownTimeout:     DefaultShutdownTimeout,
		LogLevel:            DefaultLogLevel,
		LogFormat:           DefaultLogFormat,
	}
}

// FIFO reports whether the queue is a FIFO queue (its name ends in .fifo).
func (c *Config) FIFO() bool {
	return strings.HasSuffix(c.QueueURL, ".fifo") || strings.HasSuffix(c.Queue, ".fifo")
}

// Validate checks every field and returns the first problem, naming the
// flag and what it accepts. A negative Prefetch becomes Concurrency.
func (c *Config) Validate() error {
	if c.Prefetch < 0 {
		c.Prefetch = c.Concurrency
	}
	if c.QueueURL == "" && c.Queue == "" {
		return fmt.Errorf("--queue-url or --queue is required: the queue to consume")
	}
	if c.QueueURL != "" {
		u, err := url.Parse(c.QueueURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(strings.Trim(u.Path, "/")) == 0 {
			return fmt.Errorf("--queue-url %q is not a queue URL: want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME", c.QueueURL)
		}
	}
	if c.EndpointURL != "" {
		u, err := url.Parse(c.EndpointURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--endpoint-url %q is not an http(s) URL", c.EndpointURL)
		}
	}
	checks := []struct {
		flag      string
		v, lo, hi int
	}{
		{"--concurrency", c.Concurrency, 1, 10000},
		{"--fetchers", c.Fetchers, 1, 1000},
		{"--prefetch", c.Prefetch, 0, 100000},
	}
	for _, ck := range checks {
		if ck.v < ck.lo || ck.v > ck.hi {
			return fmt.Errorf("%s is %d: it must be between %d and %d", ck.flag, ck.v, ck.lo, ck.hi)
		}
	}
	durs := []struct {
		flag      string
		v, lo, hi time.Duration
	}{
		{"--wait-time", c.WaitTime, 0, MaxWaitTime},
		{"--visibility-timeout", c.VisibilityTimeout, 2 * time.Second, MaxVisibility},
		{"--max-extension", c.MaxExtension, c.VisibilityTimeout, MaxVisibility},
		{"--max-processing-time", c.MaxProcessingTime, c.VisibilityTimeout, MaxVisibility},
		{"--handler-timeout", c.HandlerTimeout, 0, MaxVisibility},
		{"--delete-flush-interval", c.DeleteFlushInterval, time.Millisecond, 10 * time.Second},
		{"--retry-backoff-min", c.RetryBackoffMin, 0, MaxVisibility},
		{"--retry-backoff-max", c.RetryBackoffMax, c.RetryBackoffMin, MaxVisibility},
		{"--http-timeout", c.HTTPTimeout, time.Millisecond, MaxVisibility},
		{"--shutdown-timeout", c.ShutdownTimeout, time.Second, time.Hour},
	}
	for _, d := range durs {
		if d.v < d.lo || d.v > d.hi {
			return fmt.Errorf("%s is %s: it must be between %s and %s", d.flag, d.v, d.lo, d.hi)
		}
	}
	if c.WaitTime%time.Second != 0 || c.VisibilityTimeout%time.Second != 0 {
		return fmt.Errorf("--wait-time and --visibility-timeout must be whole seconds (SQS counts in seconds)")
	}
	if !c.handlerInCode {
		switch c.Handler {
		case "http":
			if c.HTTPURL == "" {
				return fmt.Errorf("--http-url is required with --handler http: the URL each message body is POSTed to")
			}
		case "exec":
			if len(c.Exec) == 0 {
				return fmt.Errorf("--exec is required with --handler exec: the command to run per message")
			}
		default:
			return fmt.Errorf("--handler is %q: it must be http or exec", c.Handler)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level is %q: it must be debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return fmt.Errorf("--log-format is %q: it must be json or console", c.LogFormat)
	}
	return nil
}

// ValidateWithHandler is Validate for a caller that supplies the handler
// in code (a program embedding the worker, the benchmark): the handler
// flags are not checked.
func (c *Config) ValidateWithHandler() error {
	c.handlerInCode = true
	defer func() { c.handlerInCode = false }()
	return c.Validate()
}

// InFlightLimit is how many leases the worker may hold at once.
func (c *Config) InFlightLimit() int { return c.Concurrency + c.Prefetch }
