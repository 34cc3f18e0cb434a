// Package config owns the worker's Config: every knob, its documented
// default, and the validation that names the field and its allowed range.
package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/downstream"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// Defaults. Each is the value a field takes when it is left zero.
const (
	DefaultConcurrency         = 16
	DefaultFetchers            = 0
	DefaultWaitTime            = 20 * time.Second
	DefaultVisibilityTimeout   = 30 * time.Second
	DefaultMaxExtension        = 10 * time.Minute
	DefaultMaxProcessingTime   = sqsapi.MaxVisibility
	DefaultDeleteFlushInterval = batch.DefaultFlushInterval
	DefaultRetryBackoffMin     = 1 * time.Second
	DefaultRetryBackoffMax     = 15 * time.Minute
	DefaultHTTPTimeout         = 60 * time.Second
	DefaultShutdownTimeout     = 30 * time.Second
	// DefaultMetricsAddr listens on loopback only: nothing is served
	// beyond the host unless asked (:9090 for all interfaces, as a
	// Kubernetes pod or a container must).
	DefaultMetricsAddr = "127.0.0.1:9090"
	// DefaultPprofAddr is where Pprof serves /debug/pprof/ when PprofAddr
	// is empty: loopback only.
	DefaultPprofAddr          = "127.0.0.1:6060"
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "json"
	DefaultHandler            = "http"
	DefaultExecOutputLimit    = handler.DefaultOutputLimit
	DefaultQueueStatsInterval = 15 * time.Second
	// DefaultPrefetch makes Prefetch as many as Concurrency.
	DefaultPrefetch = -1
)

// FieldError is a problem with one field of a Config. It names the field,
// so that a command line can name the flag that sets it instead.
type FieldError struct {
	// Field is the field at fault; Or lists fields that would do instead.
	Field string
	Or    []string
	// Msg says what is wrong, after the field's name: "is 0: it must be
	// between 1 and 10000". Other fields it names are written {Field}.
	Msg string
}

func (e *FieldError) Error() string { return e.Format(func(field string) string { return field }) }

// fieldRef is how Msg names another field.
var fieldRef = regexp.MustCompile(`\{([A-Za-z]+)\}`)

// Format is Error with every field named by name(field).
func (e *FieldError) Format(name func(field string) string) string {
	names := []string{name(e.Field)}
	for _, f := range e.Or {
		names = append(names, name(f))
	}
	msg := fieldRef.ReplaceAllStringFunc(e.Msg, func(ref string) string { return name(ref[1 : len(ref)-1]) })
	return strings.Join(names, " or ") + " " + msg
}

func invalid(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Config is everything `worker run` needs. Flags and environment variables
// map one-to-one onto its fields (--concurrency / SQSWORKER_CONCURRENCY).
type Config struct {
	// QueueURL is the queue to consume. Either it or Queue is required,
	// not both.
	QueueURL string
	// Queue is the name of the queue to consume, resolved with GetQueueUrl.
	Queue string
	// EndpointURL overrides the SQS endpoint. Defaults to the SDK's own
	// resolution (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, AWS_REGION).
	EndpointURL string
	// Region overrides AWS_REGION. Defaults to the SDK's resolution.
	Region string

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

	// Handler is "http" or "exec". Defaults to http.
	Handler string
	// HTTPURL is where the http handler POSTs each body.
	HTTPURL string
	// HTTPTimeout bounds one http handler request. Defaults to 60s.
	HTTPTimeout time.Duration
	// Exec is the command (argv, no shell) the exec handler runs.
	Exec []string
	// ExecTimeout bounds one run of the exec handler's command, on top of
	// HandlerTimeout; 0 means no bound of its own. Defaults to 0.
	ExecTimeout time.Duration
	// ExecOutputLimit is how many bytes of the command's stdout and of its
	// stderr are kept for logs. Defaults to DefaultExecOutputLimit.
	ExecOutputLimit int
	// ExecEnv names the worker's environment variables the command gets
	// besides handler.BaseExecEnv (PATH, HOME, locale, TZ, TMPDIR); a name
	// ending in * stands for a prefix. Defaults to none.
	ExecEnv []string
	// ExecInheritEnv gives the command the worker's whole environment,
	// credentials included. Defaults to false.
	ExecInheritEnv bool
	// LogHandlerOutput puts the start of a failed response's body, or the
	// command's stderr and stdout, in the handler's error and so in the
	// "handler failed" log line. Defaults to false: they may carry message
	// content, and are logged at debug level only.
	LogHandlerOutput bool
	// UnwrapSNS makes the handler see the inner message of SNS envelopes.
	UnwrapSNS bool
	// SNSTopicARNs, with UnwrapSNS, are the only topics whose envelopes
	// are unwrapped; an envelope naming another fails its message.
	// Defaults to none: every envelope is unwrapped.
	SNSTopicARNs []string

	// IdleTimeout, when positive, stops the worker (gracefully, exit 0)
	// once no message was received for this long. Defaults to 0: never.
	IdleTimeout time.Duration
	// MaxMessages, when positive, stops receiving after this many
	// messages; the worker finishes them and stops. Defaults to 0: no
	// limit.
	MaxMessages int

	// MetricsAddr is where /metrics, /healthz and /readyz are served;
	// empty disables the server. Defaults to DefaultMetricsAddr
	// (127.0.0.1:9090).
	MetricsAddr string
	// Pprof serves net/http/pprof's /debug/pprof/ on a listener of its
	// own, at PprofAddr or else DefaultPprofAddr. Defaults to false.
	Pprof bool
	// PprofAddr is where /debug/pprof/ is served; setting it turns Pprof
	// on. Defaults to empty: DefaultPprofAddr when Pprof is set.
	PprofAddr string
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
	// LogLevel is debug, info, warn or error. Defaults to info.
	LogLevel string
	// LogFormat is json or console. Defaults to json.
	LogFormat string
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

// Default returns a Config with every default filled in.
func Default() Config {
	return Config{
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
		Handler:            DefaultHandler,
		HTTPTimeout:        DefaultHTTPTimeout,
		ExecOutputLimit:    DefaultExecOutputLimit,
		MetricsAddr:        DefaultMetricsAddr,
		QueueStatsInterval: DefaultQueueStatsInterval,
		ShutdownTimeout:    DefaultShutdownTimeout,
		LogLevel:           DefaultLogLevel,
		LogFormat:          DefaultLogFormat,
	}
}

// PprofListenAddr is where /debug/pprof/ is served, "" when it is not.
func (c *Config) PprofListenAddr() string {
	switch {
	case c.PprofAddr != "":
		return c.PprofAddr
	case c.Pprof:
		return DefaultPprofAddr
	}
	return ""
}

// FIFO reports whether the queue is a FIFO queue (its name ends in .fifo).
func (c *Config) FIFO() bool {
	return strings.HasSuffix(c.QueueURL, ".fifo") || strings.HasSuffix(c.Queue, ".fifo")
}

// Validate checks every field the pipeline uses and returns the first
// problem, a *FieldError naming the field and what it accepts. It changes
// nothing. The handler's fields are checked by ValidateHandler.
func (c *Config) Validate() error {
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
	if c.EndpointURL != "" {
		u, err := url.Parse(c.EndpointURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("EndpointURL", "%q is not an http(s) URL", c.EndpointURL)
		}
	}
	checks := []struct {
		field     string
		v, lo, hi int
	}{
		{"Concurrency", c.Concurrency, 1, 10000},
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
	for _, a := range []struct{ field, v string }{{"MetricsAddr", c.MetricsAddr}, {"PprofAddr", c.PprofAddr}} {
		if err := checkListenAddr(a.v); err != nil {
			return invalid(a.field, "is %q: %v", a.v, err)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return invalid("LogLevel", "is %q: it must be debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return invalid("LogFormat", "is %q: it must be json or console", c.LogFormat)
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

// checkListenAddr checks a listen address: empty (off), or host:port with
// a port number; the host may be empty (all interfaces).
func checkListenAddr(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, such as 127.0.0.1:9090 (loopback) or :9090 (all interfaces)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number between 0 and 65535", port)
	}
	return nil
}

// ValidateHandler checks the fields of the handler Handler chooses; a
// program that supplies its handler in code needs only Validate.
func (c *Config) ValidateHandler() error {
	if err := c.validateSNS(); err != nil {
		return err
	}
	switch c.Handler {
	case "http":
		if len(c.Exec) > 0 {
			return invalid("Exec", "is set but {Handler} is http: add {Handler} exec")
		}
		if c.HTTPURL == "" {
			return invalid("HTTPURL", "is required with the http handler: the URL each message body is POSTed to")
		}
		if _, err := handler.ParseURL(c.HTTPURL); err != nil {
			return invalid("HTTPURL", "%v", err)
		}
		if c.HTTPTimeout < time.Millisecond || c.HTTPTimeout > sqsapi.MaxVisibility {
			return invalid("HTTPTimeout", "is %s: it must be between 1ms and %s", c.HTTPTimeout, sqsapi.MaxVisibility)
		}
	case "exec":
		if len(c.Exec) == 0 {
			return invalid("Exec", "is required with the exec handler: the command to run per message")
		}
		for _, name := range c.ExecEnv {
			if err := handler.CheckEnvName(name); err != nil {
				return invalid("ExecEnv", "%v", err)
			}
		}
		if c.ExecTimeout < 0 || c.ExecTimeout > sqsapi.MaxVisibility {
			return invalid("ExecTimeout", "is %s: it must be between 0 (no bound of its own) and %s", c.ExecTimeout, sqsapi.MaxVisibility)
		}
		if c.ExecOutputLimit < 1 || c.ExecOutputLimit > sqsapi.MaxMessageSize {
			return invalid("ExecOutputLimit", "is %d: it must be between 1 and %d bytes", c.ExecOutputLimit, sqsapi.MaxMessageSize)
		}
	default:
		return invalid("Handler", "is %q: it must be http or exec", c.Handler)
	}
	return nil
}

func (c *Config) validateSNS() error {
	if len(c.SNSTopicARNs) == 0 {
		return nil
	}
	if !c.UnwrapSNS {
		return invalid("SNSTopicARNs", "is set but {UnwrapSNS} is off: add {UnwrapSNS}, or leave the topics out")
	}
	for _, arn := range c.SNSTopicARNs {
		if err := handler.CheckTopicARN(arn); err != nil {
			return invalid("SNSTopicARNs", "%v", err)
		}
	}
	return nil
}

// PrefetchOrDefault is Prefetch, or Concurrency when Prefetch is -1.
func (c *Config) PrefetchOrDefault() int {
	if c.Prefetch < 0 {
		return c.Concurrency
	}
	return c.Prefetch
}

// MaxFetchers is the most long polls the worker keeps going: Fetchers
// when pinned, else enough to fill the in-flight limit in one round (ten
// messages a poll).
func (c *Config) MaxFetchers() int {
	if c.Fetchers > 0 {
		return c.Fetchers
	}
	return max(1, (c.InFlightLimit()+9)/10)
}

// InFlightLimit is how many leases the worker may hold at once.
func (c *Config) InFlightLimit() int { return c.Concurrency + c.PrefetchOrDefault() }
