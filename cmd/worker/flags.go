package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sqsworker/sqsworker/internal/config"
)

// envPrefix maps --some-flag to SQSWORKER_SOME_FLAG.
const envPrefix = "SQSWORKER_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

type flagGroup struct {
	title string
	names []string
}

// argvFlag collects --exec as an argv: given once, it is split on spaces
// (no shell, no quoting); given again, each value is one more argument.
type argvFlag struct {
	argv *[]string
	set  bool
}

func (a *argvFlag) String() string {
	if a.argv == nil {
		return ""
	}
	return strings.Join(*a.argv, " ")
}

func (a *argvFlag) Set(v string) error {
	if !a.set {
		*a.argv = nil
		a.set = true
		*a.argv = append(*a.argv, strings.Fields(v)...)
		return nil
	}
	*a.argv = append(*a.argv, v)
	return nil
}

// runFlags binds every Config field to a flag and returns the groups --help
// shows them in.
func runFlags(fs *flag.FlagSet, c *config.Config) []flagGroup {
	fs.StringVar(&c.QueueURL, "queue-url", c.QueueURL, "URL of the queue to consume")
	fs.StringVar(&c.Queue, "queue", c.Queue, "name of the queue to consume, resolved with GetQueueUrl (instead of --queue-url)")
	fs.StringVar(&c.EndpointURL, "endpoint-url", c.EndpointURL, "SQS endpoint (default: the SDK's resolution: AWS_ENDPOINT_URL_SQS, AWS_REGION)")
	fs.StringVar(&c.Region, "region", c.Region, "AWS region (default: AWS_REGION)")

	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "handlers running at once")
	fs.IntVar(&c.Fetchers, "fetchers", c.Fetchers, "ReceiveMessage long polls at once (0: adapt between 1 and (concurrency+prefetch)/10, more while receives come back full)")
	fs.IntVar(&c.Prefetch, "prefetch", c.Prefetch, "received messages that may wait for a free handler (-1: as many as --concurrency)")
	fs.DurationVar(&c.WaitTime, "wait-time", c.WaitTime, "long-poll wait of each receive, 0s-20s")
	fs.DurationVar(&c.VisibilityTimeout, "visibility-timeout", c.VisibilityTimeout, "lease asked for on receive; heartbeats extend it while the handler runs")
	fs.DurationVar(&c.MaxExtension, "max-extension", c.MaxExtension, "longest single lease extension (extensions follow the p99 handler time)")
	fs.DurationVar(&c.MaxProcessingTime, "max-processing-time", c.MaxProcessingTime, "stop extending a lease after this long (SQS allows 12h)")
	fs.DurationVar(&c.HandlerTimeout, "handler-timeout", c.HandlerTimeout, "cancel a handler after this long (0: no timeout)")
	fs.DurationVar(&c.DeleteFlushInterval, "delete-flush-interval", c.DeleteFlushInterval, "longest wait for a full DeleteMessageBatch of 10")
	fs.DurationVar(&c.RetryBackoffMin, "retry-backoff-min", c.RetryBackoffMin, "delay before a failed message is visible again, first receive")
	fs.DurationVar(&c.RetryBackoffMax, "retry-backoff-max", c.RetryBackoffMax, "cap of that delay, which doubles with each receive")

	fs.StringVar(&c.Handler, "handler", c.Handler, "handler kind: http or exec")
	fs.StringVar(&c.HTTPURL, "http-url", c.HTTPURL, "http handler: URL each message body is POSTed to (sqsd-compatible headers)")
	fs.DurationVar(&c.HTTPTimeout, "http-timeout", c.HTTPTimeout, "http handler: timeout of one request")
	fs.Var(&argvFlag{argv: &c.Exec}, "exec", "exec handler: command run per message, body on stdin (split on spaces; repeat the flag for arguments with spaces)")
	fs.DurationVar(&c.ExecTimeout, "exec-timeout", c.ExecTimeout, "exec handler: kill the command after this long (0: only --handler-timeout bounds it)")
	fs.IntVar(&c.ExecOutputLimit, "exec-output-limit", c.ExecOutputLimit, "exec handler: bytes of the command's stdout and of its stderr kept for the log")
	fs.BoolVar(&c.UnwrapSNS, "unwrap-sns", c.UnwrapSNS, "give the handler the inner message of SNS envelopes")

	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "listen address of /metrics, /healthz and /readyz (empty: off)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "also serve /debug/pprof/ (CPU, heap, goroutine profiles) on --metrics-addr")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long running handlers may take after SIGTERM")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "exit 0 once no message was received for this long (0: never)")
	fs.IntVar(&c.MaxMessages, "max-messages", c.MaxMessages, "stop receiving after this many messages, finish them, exit 0 (0: no limit)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json or console")

	return []flagGroup{
		{"Queue", []string{"queue-url", "queue", "endpoint-url", "region"}},
		{"Throughput", []string{"concurrency", "fetchers", "prefetch", "wait-time", "delete-flush-interval"}},
		{"Leases and retries", []string{"visibility-timeout", "max-extension", "max-processing-time", "handler-timeout", "retry-backoff-min", "retry-backoff-max"}},
		{"Handler", []string{"handler", "http-url", "http-timeout", "exec", "exec-timeout", "exec-output-limit", "unwrap-sns"}},
		{"Operations", []string{"metrics-addr", "pprof", "shutdown-timeout", "idle-timeout", "max-messages", "log-level", "log-format"}},
	}
}

// applyEnv sets every flag whose SQSWORKER_ variable is set; flags on the
// command line, parsed after, win.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

func usage(w io.Writer, cmd, summary string, fs *flag.FlagSet, groups []flagGroup) {
	fmt.Fprintf(w, "Usage: worker %s [flags]\n\n%s\n", cmd, summary)
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := fs.Lookup(name)
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "  --%s (%s)\n      %s%s\n", f.Name, envName(f.Name), f.Usage, def)
		}
	}
}

// configFlags maps every config.Config field a user sets to its flag, so
// that validation errors, which name fields, name flags here.
var configFlags = map[string]string{
	"QueueURL": "queue-url", "Queue": "queue", "EndpointURL": "endpoint-url", "Region": "region",
	"Concurrency": "concurrency", "Fetchers": "fetchers", "Prefetch": "prefetch", "WaitTime": "wait-time",
	"VisibilityTimeout": "visibility-timeout", "MaxExtension": "max-extension", "MaxProcessingTime": "max-processing-time",
	"HandlerTimeout": "handler-timeout", "DeleteFlushInterval": "delete-flush-interval",
	"RetryBackoffMin": "retry-backoff-min", "RetryBackoffMax": "retry-backoff-max",
	"Handler": "handler", "HTTPURL": "http-url", "HTTPTimeout": "http-timeout", "Exec": "exec",
	"ExecTimeout": "exec-timeout", "ExecOutputLimit": "exec-output-limit", "UnwrapSNS": "unwrap-sns",
	"IdleTimeout": "idle-timeout", "MaxMessages": "max-messages", "MetricsAddr": "metrics-addr", "Pprof": "pprof", "ShutdownTimeout": "shutdown-timeout",
	"LogLevel": "log-level", "LogFormat": "log-format",
}

// flagError renders err, naming flags where it names Config fields.
func flagError(err error) string {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		return err.Error()
	}
	return fe.Format(func(field string) string {
		if name, ok := configFlags[field]; ok {
			return "--" + name
		}
		return field
	})
}

// flagErrorf is err with its Config fields named as flags.
func flagErrorf(err error) error {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	return errors.New(flagError(err))
}
