package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// inproc is a worker running in this process through the public package,
// the way a Go program embeds it (and `worker run` runs it), with its
// metrics on a registry of its own and logs off.
type inproc struct {
	w       *sqsworker.Worker
	metrics *captured
	stopIn  time.Duration // how long a graceful stop may take
	done    chan error
	stopped bool
}

// startWorker builds and starts a worker on queueURL with the bench's
// settings, changed by tune, and handler h.
func (e *env) startWorker(ctx context.Context, queueURL string, h sqsworker.Handler, tune func(*sqsworker.Config)) (*inproc, error) {
	cfg := sqsworker.Config{WaitTime: e.opts.WaitTime, Concurrency: e.opts.Concurrency, Fetchers: e.opts.Fetchers}
	if cfg.WaitTime == 0 {
		cfg.WaitTime = -1 // short polls
	}
	if tune != nil {
		tune(&cfg)
	}
	client, err := sqsapi.New(ctx, sqsapi.Options{EndpointURL: e.endpoint, Region: sqstest.Region})
	if err != nil {
		return nil, err
	}
	m := &captured{Registry: prometheus.NewRegistry(), byName: map[string]prometheus.Collector{}}
	w, err := sqsworker.New(client, queueURL, h, &cfg, sqsworker.WithRegisterer(m))
	if err != nil {
		return nil, err
	}
	if err := w.Start(ctx); err != nil {
		return nil, err
	}
	p := &inproc{w: w, metrics: m, done: make(chan error, 1),
		stopIn: max(cfg.WaitTime, 0) + cmp.Or(cfg.ShutdownTimeout, 30*time.Second) + 30*time.Second}
	go func() { <-w.Stopped(); p.done <- w.Err() }()
	return p, nil
}

// stop shuts the worker down gracefully and waits for it.
func (p *inproc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	go func() { _ = p.w.Stop(context.Background()) }()
	select {
	case err := <-p.done:
		return err
	case <-time.After(p.stopIn):
		return fmt.Errorf("in-process worker did not stop")
	}
}

// count is the sum over its labels of the worker's counter or gauge name.
func (p *inproc) count(name string) float64 {
	total := 0.0
	for _, m := range collect(p.metrics.byName[name]) {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

// deleted is the messages whose delete SQS confirmed.
func (p *inproc) deleted() float64 { return p.count("sqsworker_messages_deleted_total") }

// requests is the SQS requests sent so far, all outcomes, by action.
func (p *inproc) requests() map[string]float64 {
	out := map[string]float64{}
	for _, m := range collect(p.metrics.byName["sqsworker_sqs_requests_total"]) {
		for _, l := range m.GetLabel() {
			if l.GetName() == "action" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// captured is a registry that also keeps each collector by its metric's
// name, so that the bench reads one counter directly rather than gather
// the whole registry while it measures.
type captured struct {
	*prometheus.Registry
	byName map[string]prometheus.Collector
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (c *captured) Register(col prometheus.Collector) error {
	if err := c.Registry.Register(col); err != nil {
		return err
	}
	descs := make(chan *prometheus.Desc, 8)
	go func() { col.Describe(descs); close(descs) }()
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			c.byName[m[1]] = col
		}
	}
	return nil
}

// waitDeleted waits until n deletes are confirmed.
func (p *inproc) waitDeleted(ctx context.Context, n int, within time.Duration) error {
	var stopped error
	err := sqstest.Poll(ctx, within, time.Millisecond, fmt.Sprintf("%d deletes", n), func() bool {
		select {
		case err := <-p.done:
			p.done <- err // for stop
			stopped = errStopped
			if err != nil {
				stopped = fmt.Errorf("%w: %w", errStopped, err)
			}
			return true
		default:
		}
		return p.deleted() >= float64(n)
	})
	if err != nil {
		return err
	}
	return stopped
}

func collect(c prometheus.Collector) []*dto.Metric {
	if c == nil {
		return nil
	}
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	var out []*dto.Metric
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) == nil {
			out = append(out, &pb)
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

// profiler writes pprof profiles of in-process worker phases.
type profiler struct {
	cpu, mem string
	multi    bool
}

func newProfiler(o Options) *profiler {
	n := 0
	for _, id := range []string{scenarioThroughput, scenarioRequests, scenarioLongTail, scenarioPickup, scenarioHeartbeat} {
		if slices.Contains(o.Scenarios, id) {
			n++
		}
	}
	return &profiler{cpu: o.CPUProfile, mem: o.MemProfile, multi: n > 1}
}

func (p *profiler) path(base, scenario string) string {
	if !p.multi {
		return base
	}
	ext := filepath.Ext(base)
	return strings.TrimSuffix(base, ext) + "-" + scenario + ext
}

// start begins a CPU profile for scenario; the returned func ends it and
// writes the allocation profile (allocations since the process started:
// scenarios that ran before are in it too).
func (p *profiler) start(scenario string) (func() error, error) {
	var cpu *os.File
	if p.cpu != "" {
		f, err := os.Create(p.path(p.cpu, scenario))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return nil, err
		}
		cpu = f
	}
	return func() error {
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				return err
			}
		}
		if p.mem == "" {
			return nil
		}
		f, err := os.Create(p.path(p.mem, scenario))
		if err != nil {
			return err
		}
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}, nil
}
