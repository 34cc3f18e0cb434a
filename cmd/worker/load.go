package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sqsworker/sqsworker/internal/tools/load"
	"github.com/sqsworker/sqsworker/internal/tools/progress"
)

var loadCmd = &command{
	name:    "load",
	summary: "Send a file of JSON lines, one message per line, to a queue",
	details: `Each line keeps its body, message attributes, MessageGroupId, AWSTraceHeader
and, into a FIFO queue, MessageDeduplicationId; batches of 10, at most 1 MiB.
A line that is not a message, or that SQS refuses, is named with its number
and reason; the others are sent, and the run ends with status 1 and a summary
of what was sent, refused and skipped. Progress shows on stderr when it is a
terminal.`,
	example: `worker load --queue orders --in orders.jsonl --rate 200/s
jq -c 'select(.message_attributes.kind.string_value == "created")' saved.jsonl | worker load --queue orders`,
	flags: func(f *flagSet) action {
		var t target
		var in struct{ In string }
		var cfg load.Config
		t.flags(f, "send to")
		f.bind(&in, &cfg)
		f.group("Input")
		f.Var(&in.In, "in", "file of JSON lines to send (default: standard input)")
		f.group("Sending")
		f.Value(rateFlag{&cfg.Rate}, &cfg.Rate, "rate", "send at most this many messages per second, such as 100/s (default: no limit)")
		return func(ctx context.Context, std stdio) error { return runLoad(ctx, std, t, in.In, cfg) }
	},
}

func runLoad(ctx context.Context, std stdio, t target, path string, cfg load.Config) error {
	src, name, size, err := openInput(path, std.in)
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }()
	client, q, err := t.open(ctx)
	if err != nil {
		return err
	}
	cfg.QueueURL = q.URL
	cfg.FIFO = isFIFO(q)
	fmt.Fprintf(std.err, "loading %s into %s\n", name, q.URL)
	bar := progress.New(std.err, progress.Options{Total: size, Bytes: true, Description: "load"})
	defer bar.Close()
	cfg.OnProblem = func(p load.Problem) {
		bar.Printf(std.err, "worker: %s:%d: %s: %s", name, p.Line, p.Kind, p.Reason)
	}
	cfg.OnProgress = func(read int64, r load.Report) {
		bar.Set(read)
		bar.Describe(count(r.Sent) + " sent")
	}
	r, err := load.Run(ctx, cfg, client, src)
	bar.Close()
	counts := fmt.Sprintf("%s sent to %s, %s refused, %s skipped", count(r.Sent), q.Name(), count(r.Refused), count(r.Skipped))
	switch {
	case err != nil:
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		rest := ""
		if !r.Complete {
			rest = fmt.Sprintf("; nothing after %s:%d was read", name, r.LastLine)
		}
		return fmt.Errorf("load stopped: %w; %s, %s not sent%s", err, counts, count(r.Unsent), rest)
	case !r.OK():
		return fmt.Errorf("load: %s lines from %s: %s (each line not sent is named above)", count(r.Lines), name, counts)
	}
	fmt.Fprintf(std.err, "load: %s lines from %s: %s sent to %s\n", count(r.Lines), name, count(r.Sent), q.Name())
	return nil
}

// openInput opens a tool's input: the file at path, or in when path is
// empty or "-". size is the file's, -1 when not known.
func openInput(path string, in io.Reader) (io.ReadCloser, string, int64, error) {
	if path == "" || path == "-" {
		return io.NopCloser(in), "stdin", -1, nil
	}
	f, err := os.Open(path)
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil && st.IsDir() {
			err = errors.New("is a directory")
		}
		if err == nil {
			return f, path, st.Size(), nil
		}
		_ = f.Close()
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return nil, "", 0, fmt.Errorf("cannot read --in %s: %w (check the path and its permissions)", path, err)
}
