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
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// MaxConcurrency is the most messages the pipeline runs at once: handlers,
// or with a batch handler the messages of every invocation in flight.
const MaxConcurrency = 10000

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

// Config is everything `worker run` needs: the pipeline's settings
// (Pipeline, which a program embedding the worker sets through the public
// package's Config instead), and what only the command line has — where the
// client sends, the built-in handlers, the listeners and the log. Flags and
// environment variables map one-to-one onto its fields (--concurrency /
// SQSWORKER_CONCURRENCY).
type Config struct {
	// EndpointURL overrides the SQS endpoint. Defaults to the SDK's own
	// resolution (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, AWS_REGION).
	EndpointURL string
	// Region overrides AWS_REGION. Defaults to the SDK's resolution.
	Region string

	Pipeline

	// Handler is "http", "exec" or "lambda". Defaults to http.
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
	// Batch configures the lambda handler, and http batches.
	Batch Batch
	// SNSTopicARNs, with UnwrapSNS, are the only topics whose envelopes
	// are unwrapped; an envelope naming another fails its message.
	// Defaults to none: every envelope is unwrapped.
	SNSTopicARNs []string

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
	// LogLevel is debug, info, warn or error. Defaults to info.
	LogLevel string
	// LogFormat is json or console. Defaults to json.
	LogFormat string
}

// Default returns a Config with every default filled in.
func Default() Config {
	return Config{
		Pipeline:        DefaultPipeline(),
		Batch:           DefaultBatch(),
		Handler:         DefaultHandler,
		HTTPTimeout:     DefaultHTTPTimeout,
		ExecOutputLimit: DefaultExecOutputLimit,
		MetricsAddr:     DefaultMetricsAddr,
		LogLevel:        DefaultLogLevel,
		LogFormat:       DefaultLogFormat,
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

// Validate checks every field and returns the first problem, a
// *FieldError naming the field and what it accepts. It changes nothing.
// The handler's fields are checked by ValidateHandler.
func (c *Config) Validate() error {
	if err := c.Pipeline.Validate(); err != nil {
		return err
	}
	if c.EndpointURL != "" {
		u, err := url.Parse(c.EndpointURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("EndpointURL", "%q is not an http(s) URL", c.EndpointURL)
		}
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
	if done, err := c.validateBatch(); done || err != nil {
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
		return invalid("Handler", "is %q: it must be http, exec or lambda", c.Handler)
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
