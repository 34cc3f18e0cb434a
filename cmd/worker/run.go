package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/worker"
)

const runSummary = `Consume a queue: receive, handle, keep leases alive, delete what succeeded.
SIGTERM or SIGINT shuts down gracefully; a second one stops at once.`

func runCommand(args []string, stdout io.Writer) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	groups := runFlags(fs, &cfg)
	if err := parseFlags(fs, args, stdout, "run", runSummary, groups); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %s", errUsage, flagError(err))
	}
	if err := cfg.ValidateHandler(); err != nil {
		return fmt.Errorf("%w: %s", errUsage, flagError(err))
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	h, err := newHandler(cfg, log)
	if err != nil {
		return err
	}
	w, err := worker.New(context.Background(), cfg, h, log)
	if err != nil {
		return flagErrorf(err)
	}
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
		h, err = handler.NewExec(handler.ExecConfig{Argv: cfg.Exec, Timeout: cfg.ExecTimeout, OutputLimit: cfg.ExecOutputLimit}, log)
		if err != nil {
			return nil, fmt.Errorf("--exec: %w", err)
		}
	default:
		h, err = handler.NewHTTP(handler.HTTPConfig{URL: cfg.HTTPURL, Timeout: cfg.HTTPTimeout, Concurrency: cfg.Concurrency}, log)
		if err != nil {
			return nil, fmt.Errorf("--http-url: %w", err)
		}
	}
	if cfg.UnwrapSNS {
		h = handler.UnwrapSNS(h)
	}
	return h, nil
}
