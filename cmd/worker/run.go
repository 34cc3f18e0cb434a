package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/pool"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tracing"
)

var runCmd = &command{
	name:    "run",
	summary: "Consume a queue: receive, handle, keep leases alive, delete what succeeded",
	details: "SIGTERM or SIGINT shuts down gracefully; a second one stops at once.",
	example: "worker run --queue orders --http-url http://127.0.0.1:8080/work --concurrency 32",
	flags: func(f *flagSet) action {
		cfg := config.Default()
		runFlags(f, &cfg)
		return func(ctx context.Context, std stdio) error { return runWorker(ctx, cfg, std.signals) }
	},
}

// runWorker runs the worker until ctx is cancelled (the first signal: a
// graceful stop) or it stops on its own; a signal on later forces the
// stop.
func runWorker(ctx context.Context, cfg config.Config, later <-chan os.Signal) error {
	if err := cfg.Validate(); err != nil {
		return usageErr(err)
	}
	if err := cfg.ValidateHandler(); err != nil {
		return usageErr(err)
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	bg := context.Background()
	stopTracing, err := tracing.Setup(bg, log)
	if err != nil {
		return err
	}
	defer func() { _ = stopTracing(bg) }()
	h, err := newHandler(cfg, log)
	if err != nil {
		return err
	}
	cfg.Concurrency = pipelineConcurrency(cfg)
	client, err := sqsapi.New(bg, sqsapi.Options{EndpointURL: cfg.EndpointURL, Region: cfg.Region, Logger: log})
	if err != nil {
		return err
	}
	// The queue first: a typo in its name is the error to show, before a
	// listener's. Start looks it up again, with its redrive policy.
	lookup, cancel := context.WithTimeout(bg, 15*time.Second)
	q, err := sqsapi.ResolveQueue(lookup, client, sqsapi.QueueRef{URL: cfg.QueueURL, Name: cfg.Queue}, cfg.EndpointURL)
	cancel()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w, err := sqsworker.New(client, q.URL, builtin{h}, publicConfig(cfg),
		sqsworker.WithRegisterer(reg), sqsworker.WithLogger(log))
	if err != nil {
		return err
	}
	srv, err := listen(cfg, reg, w)
	if err != nil {
		return err
	}
	defer srv.stop(bg)
	if err := w.Start(bg); err != nil {
		return err
	}
	srv.start(bg)
	log.Info("worker started", zap.String("queue_url", w.QueueURL()), zap.Int("concurrency", cfg.Concurrency),
		zap.Int("fetchers", cfg.Fetchers), zap.Int("max_fetchers", cfg.MaxFetchers()),
		zap.Int("in_flight_limit", cfg.InFlightLimit()), zap.Bool("fifo", cfg.FIFO()),
		zap.String("metrics_addr", srv.metricsAddr()), zap.String("pprof_addr", srv.pprofAddr()))
	// A slot is one handler call: one message, or one batch's invocation.
	defer tuneGC(gcHeapFloor, uint64(pool.Slots(cfg.Concurrency, h))*handlerStackBytes)()
	return serve(ctx, w, srv, later, log)
}

// serve runs w until ctx is cancelled by a signal, which stops it
// gracefully; a second signal, on later, forces the stop. It returns why w
// stopped on its own, if it did, or why the metrics server failed (the
// worker is stopped gracefully then).
func serve(ctx context.Context, w *sqsworker.Worker, srv *servers, later <-chan os.Signal, log *zap.Logger) error {
	bg := context.Background()
	var failed error
	select {
	case <-ctx.Done():
		sig := "none"
		if s := signalOf(ctx); s != nil {
			sig = s.String()
		}
		log.Info("signal received: stopping gracefully (a second one forces it)", zap.String("signal", sig))
	case <-srv.metricsFailed():
		failed = srv.metrics.Err()
		log.Error("stopping: metrics server failed", zap.Error(failed))
	case <-w.Stopped():
		return w.Err()
	}
	go func() { _ = w.Stop(bg) }()
	select {
	case sig := <-later:
		log.Warn("second signal: forcing the stop", zap.String("signal", sig.String()))
		_ = w.StopAndCancel(bg)
	case <-w.Stopped():
	}
	return cmp.Or(failed, w.Err())
}

func newHandler(cfg config.Config, log *zap.Logger) (handler.Handler, error) {
	var h handler.Handler
	var err error
	switch cfg.Handler {
	case "exec":
		h, err = handler.NewExec(handler.ExecConfig{
			Argv: cfg.Exec, Timeout: cfg.ExecTimeout, OutputLimit: cfg.ExecOutputLimit,
			Env: cfg.ExecEnv, InheritEnv: cfg.ExecInheritEnv, OutputInErrors: cfg.LogHandlerOutput,
		}, log)
		if err != nil {
			return nil, fmt.Errorf("--exec: %w", err)
		}
	case "lambda":
		if h, err = newLambdaHandler(cfg); err != nil {
			return nil, err
		}
	default:
		var hh *handler.HTTP
		hh, err = handler.NewHTTP(handler.HTTPConfig{
			URL: cfg.HTTPURL, Timeout: cfg.HTTPTimeout, Concurrency: cfg.Concurrency, OutputInErrors: cfg.LogHandlerOutput,
		}, log)
		if err != nil {
			return nil, fmt.Errorf("--http-url: %w", err)
		}
		if h = hh; cfg.Batch.Size(cfg.Handler) > 0 {
			if h, err = newBatcher(cfg, hh); err != nil {
				return nil, err
			}
		}
	}
	// Inside the SNS unwrap: a notification's own attributes may carry the
	// trace context. Without export a span would record nothing, and the
	// handlers pass the producer's trace context on by themselves
	// (tracing.For); its attributes cost about 1 KiB a message.
	if tracing.Exporting(os.Getenv) {
		h = tracing.Wrap(h, otel.GetTracerProvider())
	}
	if cfg.UnwrapSNS {
		h = handler.UnwrapSNS(h, handler.SNSConfig{TopicARNs: cfg.SNSTopicARNs}, log)
	}
	return h, nil
}
