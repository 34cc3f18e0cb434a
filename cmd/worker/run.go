package main

import (
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
SIGTERM or SIGINT shuts down gracefully; a second one forces it.`

func runCommand(args []string, stdout io.Writer) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	groups := runFlags(fs, &cfg)
	if err := parseFlags(fs, args, stdout, "run", runSummary, groups); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
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
	return worker.Serve(cfg, h, log, signals)
}

func newHandler(cfg config.Config, log *zap.Logger) (handler.Handler, error) {
	var h handler.Handler
	var err error
	switch cfg.Handler {
	case "exec":
		h, err = handler.NewExec(handler.ExecConfig{Argv: cfg.Exec}, log)
	default:
		h, err = handler.NewHTTP(handler.HTTPConfig{URL: cfg.HTTPURL, Timeout: cfg.HTTPTimeout, Concurrency: cfg.Concurrency}, log)
	}
	if err != nil {
		return nil, err
	}
	if cfg.UnwrapSNS {
		h = handler.UnwrapSNS(h)
	}
	return h, nil
}
