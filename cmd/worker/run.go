package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.opentelemetry.io/otel"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/tracing"
	"github.com/sqsworker/sqsworker/internal/worker"
)

var runCmd = &command{
	name:    "run",
	summary: "Consume a queue: receive, handle, keep leases alive, delete what succeeded",
	details: "SIGTERM or SIGINT shuts down gracefully; a second one stops at once.",
	example: "worker run --queue orders --http-url http://127.0.0.1:8080/work --concurrency 32",
	flags: func(f *flagSet) action {
		cfg := config.Default()
		runFlags(f, &cfg)
		return func(_ context.Context, _ stdio) error { return runWorker(cfg) }
	},
}

func runWorker(cfg config.Config) error {
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

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	stopTracing, err := tracing.Setup(context.Background(), log)
	if err != nil {
		return err
	}
	defer func() { _ = stopTracing(context.Background()) }()
	h, err := newHandler(cfg, log)
	if err != nil {
		return err
	}
	w, err := worker.New(context.Background(), cfg, h, log)
	if err != nil {
		return err
	}
	defer tuneGC(gcHeapFloor, uint64(cfg.Concurrency)*handlerStackBytes)()
	return serve(w, signals, log)
}

// serve runs w until a signal: the first stops it gracefully, a second
// forces the stop. It returns why w stopped on its own, if it did.
func serve(w *worker.Worker, signals <-chan os.Signal, log *zap.Logger) error {
	bg := context.Background()
	if err := w.Start(bg); err != nil {
		return err
	}
	select {
	case sig := <-signals:
		log.Info("signal received: stopping gracefully (a second one forces it)", zap.String("signal", sig.String()))
		go func() { _ = w.Stop(bg) }()
	case <-w.Done():
		return w.Err()
	}
	select {
	case sig := <-signals:
		log.Warn("second signal: forcing the stop", zap.String("signal", sig.String()))
		_ = w.StopAndCancel(bg)
	case <-w.Done():
	}
	return w.Err()
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
	default:
		h, err = handler.NewHTTP(handler.HTTPConfig{
			URL: cfg.HTTPURL, Timeout: cfg.HTTPTimeout, Concurrency: cfg.Concurrency, OutputInErrors: cfg.LogHandlerOutput,
		}, log)
		if err != nil {
			return nil, fmt.Errorf("--http-url: %w", err)
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
