package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/replay"
)

var replayCmd = &command{
	name:    "replay",
	summary: "Run the handler over a dead-letter queue until it is empty; stop at the first failure",
	details: `Each message is handled the way run handles it, with the same handler flags,
and deleted once the handler succeeded. The first failure stops the replay
with status 1, naming the message and the error; that message is made visible
again at once, not deleted, and so is every message not handled yet: fix the
handler, then replay again. With --concurrency above 1, the handlers running
beside the one that failed finish first. The queue counts as empty as drain
tells it: a whole long poll found nothing and the queue's counts agree.
Progress shows on stderr when it is a terminal.`,
	example: `worker replay --queue orders-dlq --http-url http://127.0.0.1:8080/work
worker replay --queue orders-dlq --handler exec --exec ./handle-order --concurrency 4`,
	flags: func(f *flagSet) action {
		var t target
		cfg := config.Default()
		rc := replay.Config{Concurrency: replay.DefaultConcurrency}
		t.flags(f, "replay")
		f.bind(&cfg, &rc)
		handlerFlags(f, &cfg)
		batchFlags(f, &cfg.Batch)
		f.group("Handling")
		f.Var(&rc.Concurrency, "concurrency", "handlers running at once; with a batch handler, invocations (each of a batch)")
		f.Var(&rc.HandlerTimeout, "handler-timeout", "cancel a handler after this long, a failure (0: no timeout)")
		receiveFlags(f, &rc.Config)
		return func(ctx context.Context, std stdio) error { return runReplay(ctx, std, t, cfg, rc) }
	},
}

func runReplay(ctx context.Context, std stdio, t target, cfg config.Config, rc replay.Config) error {
	if err := rc.Validate(); err != nil {
		return usageErr(err)
	}
	cfg.Concurrency = cmp.Or(rc.Concurrency, replay.DefaultConcurrency)
	if err := cfg.ValidateHandler(); err != nil {
		return usageErr(err)
	}
	client, q, err := t.open(ctx)
	if err != nil {
		return err
	}
	// Again with the queue: a FIFO queue's batches are smaller.
	if cfg.QueueURL = q.URL; isFIFO(q) {
		if err := cfg.ValidateHandler(); err != nil {
			return usageErr(err)
		}
	}
	log, err := toolLog()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	h, err := newHandler(cfg, log)
	if err != nil {
		return err
	}
	rc.QueueURL, rc.FIFO = q.URL, isFIFO(q)
	fmt.Fprintf(std.err, "replaying %s through the handler (each message is deleted once the handler succeeded)\n", q.URL)
	bar := startProgress(ctx, std, client, q, "replay")
	defer bar.Close()
	r, err := replay.Run(ctx, rc, client, h, log)
	bar.Close()
	return replaySummary(std, q, r, err)
}

// replaySummary says what the replay did, in one line: on stderr when the
// queue was emptied, as the error otherwise.
func replaySummary(std stdio, q sqsapi.Queue, r replay.Report, err error) error {
	done := fmt.Sprintf("%s of %s handled and deleted", plural(r.Deleted, "message"), q.Name())
	if lost := r.Succeeded - r.Deleted; lost > 0 {
		done += fmt.Sprintf(" (%s more handled but not deleted: they stay in the queue and are handled again next time)", count(lost))
	}
	var f *replay.Failure
	switch {
	case errors.As(err, &f):
		others := ""
		if r.Failed > 1 {
			others = fmt.Sprintf(" (%s more failed beside it and are back too)", count(r.Failed-1))
		}
		return fmt.Errorf("replay stopped at the first failure: message %s: %w; it is back in %s, visible, not deleted%s; %s before it",
			f.MessageID, f.Err, q.Name(), others, done)
	case err != nil:
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		return fmt.Errorf("replay stopped: %w; %s; the rest stays in %s", err, done, q.Name())
	}
	fmt.Fprintf(std.err, "replay: %s; %s is empty\n", done, q.Name())
	return nil
}
