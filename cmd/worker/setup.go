package main

import (
	"context"
	"fmt"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/setup"
)

var setupCmd = &command{
	name:    "setup",
	summary: "Create a queue with its dead-letter queue and redrive policy, and subscribe it to SNS topics",
	details: `What exists is read first: run again, setup changes nothing and says so; when
an existing queue has another visibility timeout, dead-letter queue or receive
count, it changes nothing and says what differs. A created dead-letter queue
keeps messages 14 days. --subscribe also sets the queue policy that lets the
topic send to the queue; SNS is reached at --endpoint-url when it is given.`,
	example: `worker setup --queue orders --max-receive 5 --visibility-timeout 60s
worker setup --queue orders.fifo --content-based-dedup
worker setup --queue orders --subscribe arn:aws:sns:eu-west-1:123456789012:order-events`,
	flags: func(f *flagSet) action {
		var t target
		cfg := setup.Config{MaxReceive: setup.DefaultMaxReceive}
		t.flags(f, "set up")
		f.bind(&cfg)
		f.group("Dead-letter queue")
		f.Var(&cfg.DLQ, "dlq", "name of the dead-letter queue (default: the queue's name with -dlq, before any .fifo)")
		f.Var(&cfg.MaxReceive, "max-receive", "receives before a message moves to the dead-letter queue (0: no dead-letter queue)")
		f.group("Queue attributes")
		f.Var(&cfg.FIFO, "fifo", "a FIFO queue (its name ends in .fifo, which also implies this)")
		f.Var(&cfg.ContentBasedDedup, "content-based-dedup", "FIFO: deduplicate by a hash of the body when a message has no deduplication id")
		f.Var(&cfg.VisibilityTimeout, "visibility-timeout", "the queue's visibility timeout, whole seconds (default: SQS's, 30s, or what the queue has)")
		f.group("SNS")
		f.Value(listFlag{&cfg.Subscribe}, &cfg.Subscribe, "subscribe", "SNS topic ARN to subscribe the queue to; repeat for more topics")
		return func(ctx context.Context, std stdio) error { return runSetup(ctx, std, t, cfg) }
	},
}

func runSetup(ctx context.Context, std stdio, t target, cfg setup.Config) error {
	ref, err := t.ref()
	if err != nil {
		return err
	}
	cfg.Queue = ref.Name
	if ref.URL != "" {
		cfg.Queue = sqsapi.QueueName(ref.URL)
	}
	if err := cfg.Validate(); err != nil {
		return usageErr(err)
	}
	client, err := t.client(ctx)
	if err != nil {
		return err
	}
	var snsClient setup.SNS
	if len(cfg.Subscribe) > 0 {
		if snsClient, err = sqsapi.NewSNS(ctx, sqsapi.Options{EndpointURL: t.EndpointURL, Region: t.Region}); err != nil {
			return err
		}
	}
	r, err := setup.Run(ctx, cfg, client, snsClient)
	for _, c := range r.Changes {
		fmt.Fprintln(std.out, c)
	}
	if err != nil {
		return t.notSQS(err, client)
	}
	what := cfg.Queue
	if r.DLQURL != "" {
		what += " with dead-letter queue " + sqsapi.QueueName(r.DLQURL)
	}
	if n := len(cfg.Subscribe); n > 0 {
		what += ", subscribed to " + plural(n, "topic")
	}
	if len(r.Changes) == 0 {
		fmt.Fprintf(std.out, "nothing changed: %s is set up as asked (%s)\n", what, r.QueueURL)
		return nil
	}
	fmt.Fprintf(std.out, "set up %s (%s)\n", what, r.QueueURL)
	return nil
}
