package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/drain"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
)

var drainCmd = &command{
	name:    "drain",
	summary: "Save every message of a queue as JSON lines, deleting each once its line is on disk",
	details: `Lines are written in batches; each batch is synced to disk (fsync) before its
messages are deleted, so a message is in the file or still in the queue, never
in neither, even if drain is killed. To stdout, a line counts as written once
the pipe took it. --out appends; a line torn by a killed run is ended first.
Drain streams: it holds a few hundred messages at most, however long the queue.
It ends when the queue is empty: a whole long poll found nothing and the
queue's counts agree (nothing visible or delayed, nothing in flight but what
drain holds); an early empty receive does not end it. --keep deletes nothing:
every message read stays invisible for the run and is made visible again at
the end (on a FIFO queue, that holds each group at its first message).
Progress shows on stderr when it is a terminal.`,
	example: `worker drain --queue orders --out orders.jsonl
worker drain --queue orders-dlq --keep | jq -r .body
worker drain --queue orders --max 100 --keep --out sample.jsonl`,
	flags: func(f *flagSet) action {
		var t target
		var o struct{ Out string }
		var cfg drain.Config
		t.flags(f, "drain")
		f.bind(&o, &cfg)
		f.group("Output")
		f.Var(&o.Out, "out", "file to append the lines to (default: standard output)")
		f.Var(&cfg.Keep, "keep", "delete nothing: hold every message read invisible for the run, then make them all visible again")
		f.Var(&cfg.MaxMessages, "max", "read at most this many messages (0: until the queue is empty)")
		receiveFlags(f, &cfg.Config)
		return func(ctx context.Context, std stdio) error { return runDrain(ctx, std, t, o.Out, cfg) }
	},
}

func runDrain(ctx context.Context, std stdio, t target, path string, cfg drain.Config) error {
	if err := cfg.Validate(); err != nil {
		return usageErr(err)
	}
	client, q, err := t.open(ctx)
	if err != nil {
		return err
	}
	out, err := openOutput(path, std.out)
	if err != nil {
		return err
	}
	log, err := toolLog()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg.QueueURL = q.URL
	cfg.FIFO = isFIFO(q)
	if !cfg.Keep {
		fmt.Fprintf(std.err, "draining %s (messages are deleted after their line is written; --keep keeps them)\n", q.URL)
	}
	bar := startProgress(ctx, std, client, q, "drain")
	defer bar.Close()
	cfg.OnProgress = func(r drain.Report) { bar.Set(r.Written) }
	r, err := drain.Run(ctx, cfg, client, drain.Output{W: out.w, Sync: out.sync}, log)
	bar.Close()
	if cerr := out.close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", out.name, cerr)
	}
	return drainSummary(std, q, out.name, cfg, r, err)
}

func isFIFO(q sqsapi.Queue) bool {
	return q.Attributes["FifoQueue"] == "true" || strings.HasSuffix(q.URL, ".fifo")
}

// drainSummary says what the drain did, in one line: on stderr when it
// did all it was asked, as the error otherwise.
func drainSummary(std stdio, q sqsapi.Queue, to string, cfg drain.Config, r drain.Report, err error) error {
	done := fmt.Sprintf("%s from %s written to %s", plural(r.Written, "message"), q.Name(), to)
	switch {
	case cfg.Keep:
		done += " and kept in the queue, visible again"
	case r.Deleted == r.Written:
		done += " and deleted"
	default:
		done += fmt.Sprintf(" (%s of them are in the file and could not be deleted, so they are still in the queue too)",
			count(r.Written-r.Deleted))
	}
	switch {
	case err != nil:
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		return fmt.Errorf("drain stopped: %w; %s; the rest is left in %s", err, done, q.Name())
	case r.End == receive.Blocked:
		return fmt.Errorf("drain: %s; ~%s more were not read: a FIFO queue hands out a group's later messages only once its earlier ones are gone, and --keep holds them (drain without --keep reads them all)",
			done, count(int(r.Left.Visible)))
	case r.Deleted != r.Written && !cfg.Keep:
		return fmt.Errorf("drain: %s", done)
	case r.End == receive.Limit:
		fmt.Fprintf(std.err, "drain: %s (--max %s)\n", done, count(cfg.MaxMessages))
	case cfg.Keep:
		fmt.Fprintf(std.err, "drain: %s\n", done)
	default:
		fmt.Fprintf(std.err, "drain: %s; %s is empty\n", done, q.Name())
	}
	return nil
}
