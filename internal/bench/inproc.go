package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/worker"
)

// inproc is the worker pipeline running in this process, the way
// cmd/worker runs it, without the metrics listener and with logs off.
type inproc struct {
	m       *metrics.Metrics
	cfg     config.Pipeline
	w       *worker.Worker
	done    chan error
	stopped bool
}

// startWorker builds and starts an in-process worker on queueURL with the
// run's defaults, changed by tune, and handler h.
func (e *env) startWorker(ctx context.Context, queueURL string, h handler.Handler, tune func(*config.Config)) (*inproc, error) {
	cfg := config.Default()
	cfg.QueueURL, cfg.EndpointURL, cfg.Region = queueURL, e.endpoint, sqstest.Region
	cfg.MetricsAddr = ""
	cfg.WaitTime = e.opts.WaitTime
	cfg.Concurrency, cfg.Fetchers = e.opts.Concurrency, e.opts.Fetchers
	// Validate wants a handler target; h replaces the http handler.
	cfg.HTTPURL = "http://in-process.invalid/"
	if tune != nil {
		tune(&cfg)
	}
	client, err := sqsapi.New(ctx, sqsapi.Options{EndpointURL: cfg.EndpointURL, Region: cfg.Region})
	if err != nil {
		return nil, err
	}
	w, err := worker.New(ctx, cfg.Pipeline, client, h, zap.NewNop())
	if err != nil {
		return nil, err
	}
	if err := w.Start(ctx); err != nil {
		return nil, err
	}
	p := &inproc{w: w, m: w.Metrics(), cfg: w.Config(), done: make(chan error, 1)}
	go func() { <-w.Done(); p.done <- w.Err() }()
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
	case <-time.After(p.cfg.WaitTime + p.cfg.ShutdownTimeout + 30*time.Second):
		return fmt.Errorf("in-process worker did not stop")
	}
}

// deleted is the messages whose delete SQS confirmed.
func (p *inproc) deleted() float64 { return counter(p.m.MessagesDeleted) }

// requests is the SQS requests sent so far, all outcomes, by action.
func (p *inproc) requests() map[string]float64 {
	out := map[string]float64{}
	for _, m := range collect(p.m.SQSRequests) {
		for _, l := range m.GetLabel() {
			if l.GetName() == "action" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
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

func counter(c prometheus.Metric) float64 {
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		return 0
	}
	return pb.GetCounter().GetValue()
}

func collect(c prometheus.Collector) []*dto.Metric {
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
