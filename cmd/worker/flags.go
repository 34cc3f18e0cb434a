package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
)

// envPrefix maps --some-flag to SQSWORKER_SOME_FLAG.
const envPrefix = "SQSWORKER_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flagSet is one subcommand's flags. Each flag sets a field of a struct
// given to bind, and flagSet remembers which, so that a validation error
// naming the field (config.FieldError) is shown under the flag; each sits
// in the group --help shows it under, and has its SQSWORKER_ variable.
type flagSet struct {
	fs     *flag.FlagSet
	bound  []reflect.Value   // the structs flags set fields of
	groups []flagGroup       // in the order --help shows them
	fields map[string]string // Go field name → flag name
	env    func(string) (string, bool)
	// settings are pairs of flags that give one setting two ways.
	settings []setting
}

// setting is one setting given by either of two flags, such as the queue
// by URL or by name.
type setting struct {
	what string // "the queue to drain"
	a, b string // the flags' names
}

type flagGroup struct {
	title string
	names []string
}

func newFlagSet(name string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{fs: fs, fields: map[string]string{}, env: os.LookupEnv}
}

// bind declares the structs (pointers) whose fields the flags set.
func (f *flagSet) bind(structs ...any) {
	for _, s := range structs {
		v := reflect.ValueOf(s)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			panic(fmt.Sprintf("flagSet.bind: %T is not a pointer to a struct", s))
		}
		f.bound = append(f.bound, v.Elem())
	}
}

// group starts a group: the flags declared next are listed under title.
func (f *flagSet) group(title string) {
	f.groups = append(f.groups, flagGroup{title: title})
}

// Var declares a flag setting the field p points to (a string, int,
// bool, float64 or time.Duration field of a bound struct), its default the
// field's current value.
func (f *flagSet) Var(p any, name, usage string) {
	switch p := p.(type) {
	case *string:
		f.fs.StringVar(p, name, *p, usage)
	case *int:
		f.fs.IntVar(p, name, *p, usage)
	case *bool:
		f.fs.BoolVar(p, name, *p, usage)
	case *float64:
		f.fs.Float64Var(p, name, *p, usage)
	case *time.Duration:
		f.fs.DurationVar(p, name, *p, usage)
	default:
		panic(fmt.Sprintf("flag --%s: no flag kind for %T; use Value", name, p))
	}
	f.declared(name, p)
}

// Value declares a flag parsed by v, which sets the field p points to.
func (f *flagSet) Value(v flag.Value, p any, name, usage string) {
	f.fs.Var(v, name, usage)
	f.declared(name, p)
}

func (f *flagSet) declared(name string, p any) {
	if len(f.groups) == 0 {
		panic(fmt.Sprintf("flag --%s declared before any group", name))
	}
	field := f.fieldOf(p)
	if other, dup := f.fields[field]; dup {
		panic(fmt.Sprintf("flags --%s and --%s both set a field named %s", other, name, field))
	}
	f.fields[field] = name
	g := &f.groups[len(f.groups)-1]
	g.names = append(g.names, name)
}

// fieldOf names the field of a bound struct that p points to.
func (f *flagSet) fieldOf(p any) string {
	pv := reflect.ValueOf(p)
	for _, s := range f.bound {
		if name, ok := findField(s, pv); ok {
			return name
		}
	}
	panic(fmt.Sprintf("flagSet: %T points into no bound struct", p))
}

func findField(s, p reflect.Value) (string, bool) {
	for i := range s.NumField() {
		fv := s.Field(i)
		if fv.Addr().Pointer() == p.Pointer() && fv.Type() == p.Type().Elem() {
			return s.Type().Field(i).Name, true
		}
		if fv.Kind() == reflect.Struct {
			if name, ok := findField(fv, p); ok {
				return name, true
			}
		}
	}
	return "", false
}

// flagFor names the flag that sets a field, "" when none does.
func (f *flagSet) flagFor(field string) string { return f.fields[field] }

// explain names flags where err, a config.FieldError, names the Config
// fields they set: "--concurrency is -3: it must be between 1 and 10000".
// A usage error stays one.
func (f *flagSet) explain(err error) error {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	msg := errors.New(fe.Format(func(field string) string {
		if name := f.flagFor(field); name != "" {
			return "--" + name
		}
		return field
	}))
	if errors.Is(err, errUsage) {
		return usageErr(msg)
	}
	return msg
}

func (f *flagSet) usage(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "Usage: worker %s [flags]\n\n%s\n", cmd.name, cmd.about())
	for _, g := range f.groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			fl := f.fs.Lookup(name)
			def := ""
			if fl.DefValue != "" && fl.DefValue != "[]" {
				def = fmt.Sprintf(" (default %s)", fl.DefValue)
			}
			fmt.Fprintf(w, "  --%s (%s)\n      %s%s\n", fl.Name, envName(fl.Name), fl.Usage, def)
		}
	}
	fmt.Fprintf(w, "\nExample:\n%s\n", indent(cmd.example))
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

// queueFlags declares the flags every subcommand names its queue with:
// --queue-url and --queue are one setting (oneSetting).
func queueFlags(f *flagSet, queueURL, queue, endpoint, region *string, what string) {
	f.group("Queue")
	f.Var(queueURL, "queue-url", "URL of the queue to "+what)
	f.Var(queue, "queue", "name of the queue to "+what+", resolved with GetQueueUrl; instead of --queue-url, not with it (on the command line, either overrides both variables)")
	f.oneSetting("the queue to "+what, "queue-url", "queue")
	endpointFlags(f, endpoint, region)
}

// endpointFlags declares the flags every subcommand reaches SQS with.
func endpointFlags(f *flagSet, endpoint, region *string) {
	f.Var(endpoint, "endpoint-url", "SQS endpoint (default: the SDK's resolution: AWS_ENDPOINT_URL_SQS, AWS_REGION)")
	f.Var(region, "region", "AWS region (default: AWS_REGION)")
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
		a.set = true
		*a.argv = strings.Fields(v)
		return nil
	}
	*a.argv = append(*a.argv, v)
	return nil
}

// listFlag is a repeatable flag; each value may also be a comma-separated
// list (which is how its SQSWORKER_ variable gives several).
type listFlag struct{ list *[]string }

func (l listFlag) String() string {
	if l.list == nil {
		return ""
	}
	return strings.Join(*l.list, ",")
}

func (l listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.list = append(*l.list, s)
		}
	}
	return nil
}

// runFlags binds every Config field to a flag, in the groups --help shows.
func runFlags(f *flagSet, c *config.Config) {
	f.bind(c)
	queueFlags(f, &c.QueueURL, &c.Queue, &c.EndpointURL, &c.Region, "consume")
	f.Var(&c.DLQURL, "dlq-url", "dead-letter queue whose counts --queue-stats-interval reads (default: the one the queue's redrive policy names)")

	f.group("Throughput")
	f.Var(&c.Concurrency, "concurrency", "handlers running at once")
	f.Var(&c.Fetchers, "fetchers", "ReceiveMessage long polls at once (0: adapt between 1 and (concurrency+prefetch)/10, more while receives come back full)")
	f.Var(&c.Prefetch, "prefetch", "received messages that may wait for a free handler (-1: as many as --concurrency)")
	f.Var(&c.WaitTime, "wait-time", "long-poll wait of each receive, 0s-20s")
	f.Var(&c.DeleteFlushInterval, "delete-flush-interval", "longest wait for a full DeleteMessageBatch of 10")

	f.group("Leases and retries")
	f.Var(&c.VisibilityTimeout, "visibility-timeout", "lease asked for on receive; heartbeats extend it while the handler runs")
	f.Var(&c.MaxExtension, "max-extension", "longest single lease extension (extensions follow the p99 handler time)")
	f.Var(&c.MaxProcessingTime, "max-processing-time", "stop extending a lease after this long (SQS allows 12h)")
	f.Var(&c.HandlerTimeout, "handler-timeout", "cancel a handler after this long (0: no timeout)")
	f.Var(&c.RetryBackoffMin, "retry-backoff-min", "delay before a failed message is visible again, first receive")
	f.Var(&c.RetryBackoffMax, "retry-backoff-max", "cap of that delay, which doubles with each receive")

	f.group("Downstream protection")
	d := &c.Downstream
	f.Var(&d.Breaker, "breaker", "hold messages instead of retrying them while the downstream fails (refused, 502, 504, timeouts; 429 and 503 once concurrency is down to 1), pause receives, probe it")
	f.Var(&d.BreakerFailureRate, "breaker-failure-rate", "share of calls within --breaker-window that must fail for the downstream's reasons to open the breaker")
	f.Var(&d.BreakerMinFailures, "breaker-min-failures", "downstream failures in a row, or at least this many within --breaker-window at --breaker-failure-rate, that open the breaker")
	f.Var(&d.BreakerWindow, "breaker-window", "window over which the breaker counts calls")
	f.Var(&d.BreakerMaxProbeInterval, "breaker-max-probe-interval", "longest wait between probes of a failing downstream (they start 1s apart and double)")
	f.Var(&d.HealthURL, "handler-health-url", "probe this URL (GET, 2xx is healthy) instead of a held message, and wait for it before the first receive")
	f.Var(&d.AdaptiveConcurrency, "adaptive-concurrency", "lower the handlers running at once while the downstream asks to slow down (429, 503), up to --concurrency")
	f.Var(&d.MaxRate, "max-rate", "most handler starts per second (0: no limit)")
	f.Var(&d.MaxRateBurst, "max-rate-burst", "handler starts --max-rate allows at once")

	handlerFlags(f, c)
	batchFlags(f, &c.Batch)

	f.group("Operations")
	f.Var(&c.MetricsAddr, "metrics-addr", "listen address of /metrics, /healthz and /readyz: loopback unless asked (:9090 for all interfaces, as a pod or container needs; empty: off)")
	f.Var(&c.Pprof, "pprof", "serve /debug/pprof/ (CPU, heap, goroutine profiles) on a listener of its own, --pprof-addr or else "+config.DefaultPprofAddr+"; not /debug/pprof/cmdline")
	f.Var(&c.PprofAddr, "pprof-addr", "listen address of /debug/pprof/; setting it turns --pprof on. Profiles show the program's internals and cost CPU: keep it on loopback")
	f.Var(&c.QueueStatsInterval, "queue-stats-interval", "read the queue's and its dead-letter queue's counts into sqsworker_queue_messages this often (0: off)")
	f.Var(&c.ShutdownTimeout, "shutdown-timeout", "how long running handlers may take after SIGTERM")
	f.Var(&c.IdleTimeout, "idle-timeout", "exit 0 once no message was received for this long (0: never)")
	f.Var(&c.MaxMessages, "max-messages", "stop receiving after this many messages, finish them, exit 0 (0: no limit)")
	f.Var(&c.LogLevel, "log-level", "debug, info, warn or error (debug logs what handlers answer, which may carry message content)")
	f.Var(&c.LogFormat, "log-format", "json or console")
}

// handlerFlags declares the flags that choose and shape the handler, for
// every subcommand that runs one.
func handlerFlags(f *flagSet, c *config.Config) {
	f.group("Handler")
	f.Var(&c.Handler, "handler", "handler kind: http, exec or lambda")
	f.Var(&c.HTTPURL, "http-url", "http handler: URL each message body is POSTed to (sqsd-compatible headers)")
	f.Var(&c.HTTPTimeout, "http-timeout", "http handler: timeout of one request")
	f.Value(&argvFlag{argv: &c.Exec}, &c.Exec, "exec", "exec handler: command run per message, body on stdin (split on spaces; repeat the flag for arguments with spaces)")
	f.Var(&c.ExecTimeout, "exec-timeout", "exec handler: kill the command after this long (0: only --handler-timeout bounds it)")
	f.Var(&c.ExecOutputLimit, "exec-output-limit", "exec handler: bytes of the command's stdout and of its stderr kept for the log")
	f.Value(listFlag{&c.ExecEnv}, &c.ExecEnv, "exec-env", "exec handler: a variable of the worker's environment the command gets, besides "+
		strings.ReplaceAll(handler.BaseExecEnv, ",", ", ")+" and its SQS_* message variables; NAME* for a prefix (repeatable, or comma-separated)")
	f.Var(&c.ExecInheritEnv, "exec-inherit-env", "exec handler: give the command the worker's whole environment, AWS credentials and tokens included")
	f.Var(&c.LogHandlerOutput, "log-handler-output", "quote the start of a failed response's body, or the command's stderr and stdout, in the handler's error (run's handler-failed line, replay's error); without it they are logged at debug level only, as they may carry message content")
	f.Var(&c.UnwrapSNS, "unwrap-sns", "give the handler the inner message of SNS envelopes (anyone who may send to the queue can forge one: see --sns-topic-arn)")
	f.Value(listFlag{&c.SNSTopicARNs}, &c.SNSTopicARNs, "sns-topic-arn", "with --unwrap-sns, unwrap only envelopes of this topic; an envelope naming another fails its message (repeatable, or comma-separated)")
}
