// Package bench runs issue 4's performance scenarios (P1–P6) against the
// local SQS-compatible server, each beside its limit measured in the same
// run, and reports them as rows of a table. cmd/sqsbench is its front end.
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

// Scenarios are the scenario ids in the order they run. BIN is P1/P2
// through the real worker binary with an HTTP no-op handler, which shows
// that the in-process figures hold for the binary.
var Scenarios = []string{"P1", "P2", "BIN", "P3", "P4", "P5", "P6"}

// Options shape a run. Zero fields take the defaults below.
type Options struct {
	// RTT, when non-zero, puts a TCP latency proxy adding RTT to every
	// round trip between the server and everything that talks to it.
	RTT time.Duration
	// Scenarios to run, from Scenarios; empty runs them all.
	Scenarios []string
	// Scale multiplies every message count. Defaults to 1.
	Scale float64
	// P1Messages overrides P1's (and BIN's) message count, 50,000 × Scale.
	P1Messages int
	// P1Rounds is how many rounds P1 alternates worker and raw loop in,
	// at most one per 2,000 messages; each starts with the other side from
	// the round before. Defaults to 6.
	P1Rounds int
	// Concurrency and Fetchers are the worker's for P1, P2, BIN and P4.
	// Default to the worker's defaults (16 and 2).
	Concurrency, Fetchers int
	// WaitTime is every long poll's wait. A worker lets its waiting polls
	// return at shutdown, so a short wait keeps each scenario's shutdown
	// short; at saturation a poll never waits. Defaults to 2s.
	WaitTime time.Duration
	// P3Concurrency is P3's handler concurrency. Defaults to 200.
	P3Concurrency int
	// P3Fetchers is P3's fetchers; 0 sizes them by the rule of thumb
	// (rate × round trip ÷ 10, with headroom).
	P3Fetchers int
	// Seed draws P3's handler times. Defaults to 4.
	Seed uint64
	// P5Visibility is P5's visibility timeout. Defaults to 3s.
	P5Visibility time.Duration
	// P5Hold is how many visibility timeouts P5 holds its messages.
	// Defaults to 5.
	P5Hold float64
	// P6Hold is how long P6's HTTP handler holds each message, so that
	// 1,000 are in flight. Defaults to 500ms.
	P6Hold time.Duration
	// WorkerBinary is the worker to run for BIN and P6; empty builds
	// ./cmd/worker into a temporary directory.
	WorkerBinary string
	// CPUProfile and MemProfile, when set, receive pprof CPU and
	// allocation profiles of each in-process scenario's worker phase
	// (named PATH-P1.ext … when more than one scenario runs in-process;
	// P1 profiles its first worker round).
	CPUProfile, MemProfile string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.P1Rounds <= 0 {
		o.P1Rounds = 6
	}
	if o.Concurrency <= 0 {
		o.Concurrency = config.DefaultConcurrency
	}
	if o.Fetchers <= 0 {
		o.Fetchers = config.DefaultFetchers
	}
	if o.WaitTime <= 0 {
		o.WaitTime = 2 * time.Second
	}
	if o.P3Concurrency <= 0 {
		o.P3Concurrency = 200
	}
	if o.Seed == 0 {
		o.Seed = 4
	}
	if o.P5Visibility <= 0 {
		o.P5Visibility = 3 * time.Second
	}
	if o.P5Hold <= 0 {
		o.P5Hold = 5
	}
	if o.P6Hold <= 0 {
		o.P6Hold = 500 * time.Millisecond
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = Scenarios
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
	binary   string // built on first use
	tmp      string
	// p1res is what the in-process P1/P2 run measured, for BIN to compare.
	p1res struct{ rate, rawRate, perMsg float64 }
}

// Run starts the local server (and the latency proxy with RTT), runs the
// chosen scenarios and returns their rows. It sets the process's AWS
// credentials and region to the local server's: the in-process worker
// loads them the way the binary does, from the environment.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	for _, s := range opts.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q: choose from %s", s, strings.Join(Scenarios, ","))
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
	e.note("Measured on this machine in this run; the local SQS server (fauxqs) shares its CPUs with what is measured. " +
		"P1–P5 run the pipeline in-process (internal/worker, logs off), BIN and P6 the worker binary.")
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
		{[]string{"P1", "P2"}, e.p1},
		{[]string{"BIN"}, e.binaryP1},
		{[]string{"P3"}, e.p3},
		{[]string{"P4"}, e.p4},
		{[]string{"P5"}, e.p5},
		{[]string{"P6"}, e.p6},
	}
	for _, run := range runs {
		if !slices.ContainsFunc(run.ids, e.selected) {
			continue
		}
		if err := run.fn(ctx); err != nil {
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
	return max(config.DefaultFetchers, int(math.Ceil(rate*e.rttPlus().Seconds()/10*1.5)))
}

// fill creates a queue and sends bodies to it.
func (e *env) fill(ctx context.Context, prefix string, opts sqstest.QueueOptions, bodies []string) (sqstest.Queue, error) {
	q, err := e.srv.CreateQueue(ctx, prefix, opts)
	if err != nil {
		return q, err
	}
	if len(bodies) > 0 {
		e.progress("%s: sending %d messages", prefix, len(bodies))
		if err := e.srv.SendBodies(ctx, q.URL, bodies, nil); err != nil {
			return q, err
		}
	}
	return q, nil
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
