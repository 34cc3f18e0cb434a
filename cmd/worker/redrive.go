package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
	"github.com/sqsworker/sqsworker/internal/tools/redrive"
)

var redriveCmd = &command{
	name:    "redrive",
	summary: "Move messages from a dead-letter queue back to their source queue, or to --to",
	details: `Without --to, each message goes back to the queue it came from: the one its
DeadLetterQueueSourceArn names, else the dead-letter queue's only source queue
(whose redrive policy names it); when there are several and nothing tells
which, redrive refuses and asks for --to. Messages are sent in batches with
their body, message attributes, MessageGroupId and AWSTraceHeader, and each is
deleted from the dead-letter queue only once its send succeeded. Into a FIFO
queue each copy's deduplication id is the dead-letter message's id, so that
two messages with the same body both arrive under content-based deduplication.
--filter is a jq expression run on each message's line, the object drain
writes (try it on a drained file with jq first); the messages it selects move,
the others stay in the dead-letter queue untouched, as do those a target
refuses (each named). --dry-run prints the lines that would move and the
counts, and moves nothing. Progress shows on stderr when it is a terminal.

A run reads at most as many messages as the dead-letter queue held when it
started (visible, in flight and delayed): messages that arrive during the run
are left for the next one. It remembers the message id of every copy it sent,
and SQS keeps a message's id when it moves it to a dead-letter queue, so a
copy whose consumer fails on it again and that comes back during the run is
recognised and left in the dead-letter queue, not moved again: a consumer
that keeps failing cannot keep a redrive going.`,
	example: `worker redrive --from orders-dlq
worker redrive --from orders-dlq --filter '.message_attributes.kind.string_value == "created"' --dry-run
worker redrive --from orders-dlq --to orders-retry --rate 50/s --max 1000`,
	flags: func(f *flagSet) action {
		var q struct{ From, To, EndpointURL, Region string }
		var cfg redrive.Config
		f.bind(&q, &cfg)
		f.group("Queues")
		f.Var(&q.From, "from", "dead-letter queue to move messages from: a name, or a queue URL")
		f.Var(&q.To, "to", "queue to move every message to, a name or a queue URL (default: each message's own source queue)")
		endpointFlags(f, &q.EndpointURL, &q.Region)
		f.group("Selection")
		f.Var(&cfg.Filter, "filter", "jq expression run on each message's line, as drain writes it: the messages it selects move, the others stay")
		f.Var(&cfg.Max, "max", "move at most this many messages (0: no limit)")
		f.Var(&cfg.DryRun, "dry-run", "move and delete nothing: print the lines that would move, then the counts")
		f.group("Sending")
		f.Value(rateFlag{&cfg.Rate}, &cfg.Rate, "rate", "send at most this many messages per second, such as 50/s (default: no limit)")
		receiveFlags(f, &cfg.Config)
		return func(ctx context.Context, std stdio) error {
			from := target{EndpointURL: q.EndpointURL, Region: q.Region}
			ref := sqsapi.ParseQueueRef(q.From)
			from.URL, from.Name = ref.URL, ref.Name
			return runRedrive(ctx, std, from, q.To, cfg)
		}
	},
}

func runRedrive(ctx context.Context, std stdio, from target, to string, cfg redrive.Config) error {
	if from.URL == "" && from.Name == "" {
		return usageErr(&config.FieldError{Field: "From", Msg: "is required: the dead-letter queue to move messages from"})
	}
	if err := cfg.Validate(); err != nil {
		return usageErr(err)
	}
	client, dlq, err := from.open(ctx)
	if err != nil {
		return err
	}
	cfg.From = dlq
	if to != "" {
		q, err := from.resolve(ctx, client, sqsapi.ParseQueueRef(to))
		if err != nil {
			return err
		}
		if q.URL == dlq.URL {
			return usageErr(&config.FieldError{Field: "To", Msg: fmt.Sprintf("is %s, the queue messages are moved from: name another queue", dlq.Name())})
		}
		cfg.To = &q
	}
	if cfg.DryRun {
		out, err := openOutput("", std.out)
		if err != nil {
			return err
		}
		cfg.DryRunOut = out.w
	}
	log, err := toolLog()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg.FIFO = isFIFO(dlq)
	fmt.Fprintln(std.err, redriveStart(cfg))
	bar := startProgress(ctx, std, client, dlq, "redrive")
	defer bar.Close()
	cfg.OnProgress = func(r redrive.Report) { bar.Set(r.Read) }
	named := 0
	cfg.OnProblem = func(p redrive.Problem) {
		switch named++; {
		case named <= maxNamed:
			bar.Printf(std.err, "worker: %s: message %s stays: %s", dlq.Name(), p.MessageID, p.Reason)
		case named == maxNamed+1:
			bar.Printf(std.err, "worker: %s: more messages stay; they are counted, not named", dlq.Name())
		}
	}
	r, err := redrive.Run(ctx, cfg, client, log)
	bar.Close()
	return redriveSummary(std, cfg, r, from.notSQS(err, client))
}

// redriveStart names the queues a redrive reads and sends to, resolved,
// before it starts: one line on stderr.
func redriveStart(cfg redrive.Config) string {
	to := "each message's source queue"
	if cfg.To != nil {
		to = cfg.To.URL
	}
	if cfg.DryRun {
		return fmt.Sprintf("redrive dry run: reading %s, to move to %s; nothing is moved or deleted", cfg.From.URL, to)
	}
	return fmt.Sprintf("redriving %s to %s (each message is deleted from the dead-letter queue once its copy is sent; --dry-run moves nothing)", cfg.From.URL, to)
}

// maxNamed is how many messages that stay are named one by one: a
// filter that fails on every message would otherwise print a line each.
const maxNamed = 20

// redriveSummary says what the redrive did, in one line: on stderr when
// it did all it was asked, as the error otherwise.
func redriveSummary(std stdio, cfg redrive.Config, r redrive.Report, err error) error {
	dlq := cfg.From.Name()
	var to []string
	for _, name := range slices.Sorted(maps.Keys(r.ByTarget)) {
		to = append(to, fmt.Sprintf("%s to %s", count(r.ByTarget[name]), name))
	}
	var done string
	if cfg.DryRun {
		done = fmt.Sprintf("%s would move of %s read from %s", count(r.Matched), plural(r.Read, "message"), dlq)
	} else {
		done = fmt.Sprintf("moved %s of %s read from %s", count(r.Moved), plural(r.Read, "message"), dlq)
	}
	if len(to) > 0 {
		done += " (" + strings.Join(to, ", ") + ")"
	}
	var stay []string
	if r.Kept > 0 {
		stay = append(stay, fmt.Sprintf("%s did not match the filter", count(r.Kept)))
	}
	if r.FilterErrors > 0 {
		stay = append(stay, fmt.Sprintf("the filter failed on %s", count(r.FilterErrors)))
	}
	if n := r.Refused + r.Unsent; n > 0 {
		stay = append(stay, fmt.Sprintf("%s could not be sent", count(n)))
	}
	if len(stay) > 0 {
		done += "; " + strings.Join(stay, ", ") + ": they stay in " + dlq
	}
	if r.Returned > 0 {
		copies := "1 copy"
		if r.Returned > 1 {
			copies = count(r.Returned) + " copies"
		}
		done += fmt.Sprintf("; %s it sent came back into %s during the run (their consumer failed again): they stay there, not moved twice", copies, dlq)
	}
	if cfg.DryRun {
		done += "; nothing was moved or deleted"
	}
	if more := int(r.Left.Visible+r.Left.InFlight+r.Left.Delayed) - r.Stays(); r.AllRead && more > 0 {
		done += fmt.Sprintf("; ~%s more in %s came in after the run started and were not read: run redrive again to move them", count(more), dlq)
	}
	if lost := r.Moved - r.Deleted; lost > 0 {
		done += fmt.Sprintf("; %s sent could not be deleted from %s, so they are in both queues", count(lost), dlq)
	}

	var fe *config.FieldError
	switch {
	case errors.As(err, &fe) && fe.Field == "To":
		if r.Moved > 0 {
			fmt.Fprintf(std.err, "redrive: %s\n", done)
		}
		return usageErr(err)
	case err != nil:
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		return fmt.Errorf("redrive stopped: %w; %s; the rest stays in %s", err, done, dlq)
	case r.End == receive.Blocked:
		return fmt.Errorf("redrive: %s; ~%s more were not read: a FIFO queue hands out a group's later messages only once its earlier ones are gone, and the messages that stay hold them",
			done, count(int(r.Left.Visible)))
	case r.Refused+r.FilterErrors+r.Unsent > 0 || r.Moved != r.Deleted:
		return fmt.Errorf("redrive: %s", done)
	}
	fmt.Fprintf(std.err, "redrive: %s\n", done)
	return nil
}
