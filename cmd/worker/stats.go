package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/tools/progress"
	"github.com/sqsworker/sqsworker/internal/tools/stats"
)

var statsCmd = &command{
	name:    "stats",
	summary: "Show a queue's depth, its redrive policy and its dead-letter queue's depth",
	details: `The counts are SQS's approximate ones: visible, in flight (received and
neither deleted nor visible again yet), delayed. For a dead-letter queue, the
queues whose redrive policy names it are listed. --json prints one JSON object;
with --watch, one per line per reading.`,
	example: `worker stats --queue orders
worker stats --queue orders-dlq --json | jq .queue.visible
worker stats --queue orders --watch 5s`,
	flags: func(f *flagSet) action {
		var t target
		var o struct {
			JSON  bool
			Watch time.Duration
		}
		t.flags(f, "show")
		f.bind(&o)
		f.group("Output")
		f.Var(&o.JSON, "json", "print JSON instead of a table")
		f.Var(&o.Watch, "watch", "read again every this long until interrupted, at least 1s (0: once)")
		return func(ctx context.Context, std stdio) error {
			if o.Watch != 0 && o.Watch < time.Second {
				return usageErr(&config.FieldError{Field: "Watch", Msg: fmt.Sprintf("is %s: it must be 0 (once) or at least 1s", o.Watch)})
			}
			return runStats(ctx, std, t, o.JSON, o.Watch)
		}
	},
}

func runStats(ctx context.Context, std stdio, t target, asJSON bool, every time.Duration) error {
	client, q, err := t.open(ctx)
	if err != nil {
		return err
	}
	r, err := stats.NewReader(ctx, client, q)
	if err != nil {
		return t.notSQS(err, client)
	}
	p := &stats.Printer{W: std.out, JSON: asJSON}
	s, err := r.Read(ctx)
	if err != nil || every == 0 {
		if err == nil {
			err = p.Print(s)
		}
		return err
	}
	p.InPlace = progress.IsTerminal(std.out)
	p.Header = func(s stats.Stats) string {
		return fmt.Sprintf("%s, every %s (Ctrl-C to stop)", s.At.Local().Format("15:04:05"), every)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if err == nil {
			err = p.Print(s)
		}
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(std.err, "worker: %s (will read again in %s)\n", err, every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		s, err = r.Read(ctx)
	}
}
