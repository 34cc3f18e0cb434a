// Package bench runs sqsworker's performance scenarios against the local
// SQS-compatible server, each figure beside the limit or baseline it is
// judged by, measured in the same run, and reports them as rows of a
// table. cmd/sqsbench is its front end.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// The scenarios, each named by what it measures.
const (
	scenarioThroughput = "noop-throughput"
	scenarioRequests   = "requests-per-message"
	scenarioBinary     = "binary-noop"
	scenarioPeer       = "peer-throughput"
	scenarioIdle       = "idle-cost"
	scenarioLongTail   = "long-tail-utilization"
	scenarioPickup     = "pickup-latency"
	scenarioHeartbeat  = "heartbeat-cost"
	scenarioFootprint  = "footprint"
	scenarioLoad       = "load-throughput"
	scenarioIntegrity  = "receive-integrity"
	// backpressure: how the worker meets a downstream that can take less
	// than --concurrency.
	scenarioBackpressure = "backpressure"
	// replica-scaling: what more replicas on one queue add.
	scenarioReplicas = "replica-scaling"
	// http-batch: what posting batches of messages saves over one each.
	scenarioHTTPBatch = "http-batch"
)

// Scenario is one thing a run can measure.
type Scenario struct {
	// Name is what --scenarios takes and what each of its rows says.
	Name string
	// Measures says what it measures, against what.
	Measures string
}

// Scenarios are the scenarios in the order they run.
var Scenarios = []Scenario{
	{scenarioThroughput, "the public Go API (package sqsworker) with a no-op Go handler beside a raw SDK receive-and-delete loop, alternating rounds: msg/s, CPU and allocations per message"},
	{scenarioRequests, "SQS requests per message at saturation, from the same worker runs, beside the floor of 0.2"},
	{scenarioBinary, "the worker binary with an HTTP no-op handler: requests per message, msg/s and CPU per message beside a raw SDK loop's"},
	{scenarioPeer, "the worker binary at concurrency 200, default flags: msg/s beside its concurrency-bound limit, the server's ceiling and in-process peers (raw SDK loop, go-cloud)"},
	{scenarioIdle, "the worker binary, default flags, on an empty queue: SQS requests per minute"},
	{scenarioLongTail, "lognormal handler times at concurrency 200: throughput ÷ a zero-overhead consumer's, and how busy the slots stay"},
	{scenarioPickup, "send → handler start on an idle worker, less the server's round trip"},
	{scenarioHeartbeat, "1,000 messages held for several visibility timeouts: redeliveries and visibility calls per heartbeat round"},
	{scenarioFootprint, "the worker binary's peak RSS and CPU with 1,000 messages of 1 KiB in flight"},
	{scenarioLoad, "the load tool sending a file of lines to a standard and a FIFO queue ÷ a raw SendMessageBatch loop's msg/s"},
	{scenarioIntegrity, "the worker binary at 8 fetchers, concurrency 200, lognormal handler, run many times: failed receives, and whole-run ÷ steady msg/s"},
	{scenarioBackpressure, "the worker binary at concurrency 64 before an HTTP endpoint that serves 8 at once (20 ms) and answers 429 beyond: msg/s ÷ its capacity, beside the share of calls answered 429"},
	{scenarioDrainThroughput, "the drain binary writing 10,000 and 100,000 messages to a file: msg/s beside a raw receive-and-delete loop's"},
	{scenarioDrainRSS, "the drain binary's peak RSS at 10,000 and at 100,000 messages (flat memory keeps them close)"},
	{scenarioHTTPBatch, "the worker binary posting Lambda-shaped batches of 10 to a no-op HTTP handler: msg/s and CPU per message beside a raw SDK loop's, and beside one message per request"},
	{scenarioReplicas, "three worker binaries on one queue beside one, each at concurrency 8 before a handler that holds requests 20 ms: msg/s of three ÷ one's"},
}

// ScenarioNames lists the scenarios' names in the order they run.
func ScenarioNames() []string {
	names := make([]string, len(Scenarios))
	for i, s := range Scenarios {
		names[i] = s.Name
	}
	return names
}

// Options shape a run. Zero fields take the defaults below.
type Options struct {
	// RTT, when non-zero, puts a TCP latency proxy adding RTT to every
	// round trip between the server and everything that talks to it.
	RTT time.Duration
	// Scenarios to run, from Scenarios; empty runs them all.
	Scenarios []string
	// Scale multiplies every message count. Defaults to 1.
	Scale float64
	// ThroughputMessages overrides the message count of binary-noop,
	// requests-per-message and http-batch, 50,000 × Scale; noop-throughput
	// takes twice as many on each side.
	ThroughputMessages int
	// ThroughputRounds is how many rounds noop-throughput alternates worker
	// and raw loop in, at most one per 2,000 messages; each starts with the
	// other side from the round before. Defaults to 8: single rounds on a
	// shared 2-core machine range ±20%.
	ThroughputRounds int
	// Concurrency is the worker's for noop-throughput,
	// requests-per-message, binary-noop and pickup-latency. Defaults to
	// the worker's default (16).
	Concurrency int
	// Fetchers, when set, pins the worker's long polls in the same
	// scenarios, and the raw SDK loop's goroutines. Left 0, the worker
	// adapts them (its default), except in noop-throughput, whose worker
	// and raw loop both poll with 2, so that they are compared like for
	// like.
	Fetchers int
	// WaitTime is every long poll's wait. A worker lets its waiting polls
	// return at shutdown, so a short wait keeps each scenario's shutdown
	// short; at saturation a poll never waits. Defaults to 2s.
	WaitTime time.Duration
	// LongTailConcurrency is long-tail-utilization's handler concurrency.
	// Defaults to 200.
	LongTailConcurrency int
	// LongTailFetchers is long-tail-utilization's fetchers; 0 sizes them by
	// the rule of thumb (rate × round trip ÷ 10, with headroom).
	LongTailFetchers int
	// Seed draws long-tail-utilization's handler times. Defaults to 4.
	Seed uint64
	// HeartbeatVisibility is heartbeat-cost's visibility timeout. Defaults
	// to 3s.
	HeartbeatVisibility time.Duration
	// HeartbeatHold is how many visibility timeouts heartbeat-cost holds
	// its messages.
	// Defaults to 5.
	HeartbeatHold float64
	// IdleDuration is how long idle-cost leaves the worker on an empty
	// queue. Defaults to 60s.
	IdleDuration time.Duration
	// FootprintHold is how long footprint's HTTP handler holds each
	// message, so that 1,000 are in flight. Defaults to 500ms.
	FootprintHold time.Duration
	// IntegrityRuns is how many times receive-integrity runs its case.
	// Defaults to 20.
	IntegrityRuns int
	// BackpressureWarmup is how long backpressure lets the worker find the
	// endpoint's capacity before it counts, and BackpressureSpan how long
	// it counts then. Default to 10s and 20s.
	BackpressureWarmup, BackpressureSpan time.Duration
	// WorkerBinary is the worker binary the scenarios that run one run;
	// empty builds ./cmd/worker into a temporary directory.
	WorkerBinary string
	// CPUProfile and MemProfile, when set, receive pprof CPU and
	// allocation profiles of each in-process scenario's worker phase
	// (named PATH-noop-throughput.ext … when more than one scenario runs
	// in-process; noop-throughput profiles its first worker round).
	CPUProfile, MemProfile string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.ThroughputRounds <= 0 {
		o.ThroughputRounds = 8
	}
	if o.Concurrency <= 0 {
		o.Concurrency = config.DefaultConcurrency
	}
	if o.WaitTime <= 0 {
		o.WaitTime = 2 * time.Second
	}
	if o.LongTailConcurrency <= 0 {
		o.LongTailConcurrency = 200
	}
	if o.Seed == 0 {
		o.Seed = 4
	}
	if o.HeartbeatVisibility <= 0 {
		o.HeartbeatVisibility = 3 * time.Second
	}
	if o.HeartbeatHold <= 0 {
		o.HeartbeatHold = 5
	}
	if o.IdleDuration <= 0 {
		o.IdleDuration = time.Minute
	}
	if o.FootprintHold <= 0 {
		o.FootprintHold = 500 * time.Millisecond
	}
	if o.IntegrityRuns <= 0 {
		o.IntegrityRuns = 20
	}
	if o.BackpressureWarmup <= 0 {
		o.BackpressureWarmup = 10 * time.Second
	}
	if o.BackpressureSpan <= 0 {
		o.BackpressureSpan = 20 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = ScenarioNames()
	}
}

// count scales a message count, keeping at least least.
func (o *Options) count(n, least int) int {
	return max(least, int(math.Round(float64(n)*o.Scale)))
}

// Report is one run: its setting and its rows.
type Report struct {
	Mode      string    `json:"mode"`
	RTT       string    `json:"rtt,omitempty"`
	Scale     float64   `json:"scale"`
	Started   time.Time `json:"started"`
	Seconds   float64   `json:"seconds"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	Rows      []Row     `json:"rows"`
	Notes     []string  `json:"notes"`
}

// env is what every scenario shares in one run.
type env struct {
	opts     Options
	srv      *sqstest.Server
	endpoint string // the server's, or the latency proxy's
	report   *Report
	prof     *profiler
	built    map[string]string // import path → binary, built on first use
	queues   []string          // created, to delete (dropQueues)
	tmp      string
	// noop is what the in-process noop-throughput run measured, for
	// requests-per-message and binary-noop to compare.
	noop struct{ rate, pinnedPerMsg, rawPerMsg float64 }
}

// Run starts the local server (and the latency proxy with RTT), runs the
// chosen scenarios and returns their rows. It sets the process's AWS
// credentials and region to the local server's: the in-process worker
// loads them the way the binary does, from the environment.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	for _, s := range opts.Scenarios {
		if !slices.Contains(ScenarioNames(), s) {
			return nil, fmt.Errorf("unknown scenario %q: choose from %s", s, strings.Join(ScenarioNames(), ","))
		}
	}
	started := time.Now()
	r := &Report{Mode: "local", Scale: opts.Scale, Started: started.UTC(),
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	if opts.RTT > 0 {
		r.Mode, r.RTT = "rtt "+opts.RTT.String(), opts.RTT.String()
	}
	e := &env{opts: opts, report: r}
	e.progress("starting the local SQS server")
	srv, err := sqstest.Start()
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	e.srv, e.endpoint = srv, srv.Endpoint
	if err := srv.Setenv(); err != nil {
		return nil, err
	}
	if opts.RTT > 0 {
		proxy, err := sqstest.StartProxy(srv.Endpoint)
		if err != nil {
			return nil, err
		}
		defer proxy.Stop()
		if err := proxy.AddLatency("rtt", opts.RTT); err != nil {
			return nil, err
		}
		e.endpoint = proxy.Endpoint
	}
	if e.tmp, err = os.MkdirTemp("", "sqsbench"); err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(e.tmp) }()
	e.prof = newProfiler(opts)
	e.note("Measured on this machine in this run; the local SQS server (fauxqs) shares its CPUs with what is measured. "+
		"%s, %s, %s, %s and %s run the worker in-process through the public package sqsworker (logs off); %s, %s, %s, %s and %s run the worker binary, "+
		"with a no-op HTTP handler in a process of its own.",
		scenarioThroughput, scenarioRequests, scenarioLongTail, scenarioPickup, scenarioHeartbeat, scenarioBinary, scenarioPeer, scenarioIdle, scenarioFootprint,
		scenarioBackpressure)
	e.note("Long polls wait %s: a worker lets its waiting polls return at shutdown, and at saturation a poll never waits.", opts.WaitTime)
	if opts.Scale != 1 {
		e.note("Message counts are scaled by %g (--scale).", opts.Scale)
	}
	if opts.RTT > 0 {
		e.note("A TCP latency proxy adds %s to every round trip for the worker, the raw loop and the senders alike.", opts.RTT)
	}

	runs := []struct {
		ids []string
		fn  func(context.Context) error
	}{
		{[]string{scenarioThroughput}, e.throughput},
		{[]string{scenarioRequests}, e.requestsPerMessage},
		{[]string{scenarioBinary}, e.binaryNoop},
		{[]string{scenarioPeer}, e.peerThroughput},
		{[]string{scenarioIdle}, e.idleCost},
		{[]string{scenarioLongTail}, e.longTail},
		{[]string{scenarioPickup}, e.pickup},
		{[]string{scenarioHeartbeat}, e.heartbeat},
		{[]string{scenarioFootprint}, e.footprint},
		{[]string{scenarioLoad}, e.loadThroughput},
		{[]string{scenarioIntegrity}, e.receiveIntegrity},
		{[]string{scenarioBackpressure}, e.backpressure},
		{[]string{scenarioDrainThroughput, scenarioDrainRSS}, e.drain},
		{[]string{scenarioReplicas}, e.replicaScaling},
		{[]string{scenarioHTTPBatch}, e.httpBatch},
	}
	for _, run := range runs {
		if !slices.ContainsFunc(run.ids, e.selected) {
			continue
		}
		err := run.fn(ctx)
		e.dropQueues()
		if err != nil {
			r.Seconds = time.Since(started).Seconds()
			return r, fmt.Errorf("%s: %w", strings.Join(run.ids, "/"), err)
		}
	}
	r.Seconds = time.Since(started).Seconds()
	return r, nil
}

func (e *env) selected(id string) bool { return slices.Contains(e.opts.Scenarios, id) }

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.opts.Progress, "sqsbench [%s] %s\n", e.report.Mode, fmt.Sprintf(format, args...))
}

func (e *env) note(format string, args ...any) {
	e.report.Notes = append(e.report.Notes, fmt.Sprintf(format, args...))
}

// rttPlus is the round trip used to size fetchers: the added RTT plus a
// few milliseconds for the server itself.
func (e *env) rttPlus() time.Duration { return e.opts.RTT + 5*time.Millisecond }

// fetchersFor sizes fetchers for a target rate by the rule of thumb
// (rate × round trip ÷ 10), with 1.5× headroom, never below the default.
func (e *env) fetchersFor(rate float64) int {
	return max(pinnedFetchers, int(math.Ceil(rate*e.rttPlus().Seconds()/10*1.5)))
}

// pinnedFetchers is the number of polls noop-throughput pins, and of
// goroutines in the raw SDK loop, unless --fetchers says.
const pinnedFetchers = 2

// pinned is the polls of a pinned worker and the raw loop's goroutines.
func (e *env) pinned() int {
	if e.opts.Fetchers > 0 {
		return e.opts.Fetchers
	}
	return pinnedFetchers
}

// fetchersSetting says how the worker's polls are set, for a row.
func (e *env) fetchersSetting() string {
	if e.opts.Fetchers > 0 {
		return fmt.Sprintf("%d fetchers", e.opts.Fetchers)
	}
	return "adaptive fetchers (the default)"
}

// errStopped is returned when the worker stops on its own mid-scenario.
var errStopped = errors.New("worker stopped before the scenario ended")

// firstErr runs every cleanup, in order, and returns err or, when err is
// nil, the first cleanup's error.
func firstErr(err error, cleanups ...func() error) error {
	for _, c := range cleanups {
		if cerr := c(); err == nil {
			err = cerr
		}
	}
	return err
}
