package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/progress"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
)

// receiveFlags declares how the tools that read a queue to its end
// (drain, redrive, replay) receive.
func receiveFlags(f *flagSet, c *receive.Config) {
	c.WaitTime, c.VisibilityTimeout = receive.DefaultWaitTime, receive.DefaultVisibilityTimeout
	f.group("Receiving")
	f.Var(&c.WaitTime, "wait-time", "long-poll wait of each receive, 1s-20s; the queue counts as empty once a whole poll found nothing and its counts agree")
	f.Var(&c.VisibilityTimeout, "visibility-timeout", "lease asked for on receive, extended while a message is held: how long messages stay invisible if the tool dies")
}

// toolLog is the log of a tool's parts: warnings only, one line each,
// on stderr beside the tool's own lines.
func toolLog() (*zap.Logger, error) { return newLogger("warn", "console") }

// output is where a tool's lines go.
type output struct {
	w    io.Writer
	name string
	// sync is nil when w cannot be synced (a pipe, a terminal).
	sync  func() error
	close func() error
}

// openOutput opens path to append lines to, or stdout when path is empty
// or "-". A line left torn at the end of an existing file (a run that was
// killed) is ended first, so that it stays a line of its own, which load
// reports and skips; its message was never deleted.
func openOutput(path string, stdout io.Writer) (output, error) {
	if path == "" || path == "-" {
		// A reader that goes away (| head) ends the run with an error,
		// not a signal, so that what was read is still settled.
		signal.Ignore(syscall.SIGPIPE)
		out := output{w: stdout, name: "stdout", close: func() error { return nil }}
		if f, ok := stdout.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
				out.sync = f.Sync
			}
		}
		return out, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err == nil {
		err = endTornLine(f)
		if err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return output{}, fmt.Errorf("cannot write --out %s: %w (check the path and its permissions)", path, err)
	}
	return output{w: f, name: path, sync: f.Sync, close: f.Close}, nil
}

func endTornLine(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return errors.New("is a directory")
	}
	if st.Size() == 0 {
		return nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, st.Size()-1); err != nil {
		return err
	}
	if last[0] != '\n' {
		_, err = f.Write([]byte("\n"))
	}
	return err
}

// queueProgress is a tool's progress on a terminal: how many messages,
// how fast, and what is left in the queue (its ApproximateNumberOfMessages,
// read every few seconds). Off when stderr is not a terminal.
type queueProgress struct {
	bar   *progress.Bar
	verb  string
	stop  func()
	close sync.Once

	mu sync.Mutex
	n  int
	// visible is the queue's visible count as last read, when n messages
	// were done: what is left is that less what was done since.
	visible int64
	nAt     int
}

const progressReadEvery = 2 * time.Second

func startProgress(ctx context.Context, std stdio, api sqsapi.QueueAPI, q sqsapi.Queue, verb string) *queueProgress {
	p := &queueProgress{verb: verb, visible: q.Counts.Visible, stop: func() {}}
	if !progress.IsTerminal(std.err) {
		return p
	}
	p.bar = progress.New(std.err, progress.Options{Total: q.Counts.Visible, Description: verb})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	p.stop = func() { cancel(); <-done }
	go func() {
		defer close(done)
		tick := time.NewTicker(progressReadEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if d, err := sqsapi.DescribeQueue(ctx, api, q.URL); err == nil {
				p.mu.Lock()
				p.visible, p.nAt = d.Counts.Visible, p.n
				p.mu.Unlock()
				p.draw()
			}
		}
	}()
	return p
}

// Set records that n messages are done.
func (p *queueProgress) Set(n int) {
	p.mu.Lock()
	p.n = n
	p.mu.Unlock()
	p.draw()
}

func (p *queueProgress) draw() {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	n, left := p.n, max(0, p.visible-int64(p.n-p.nAt))
	p.mu.Unlock()
	p.bar.SetTotal(int64(n) + left)
	p.bar.Set(int64(n))
	p.bar.Describe(fmt.Sprintf("%s, ~%s left", p.verb, count(int(left))))
}

// Printf writes one line on stderr, around the bar.
func (p *queueProgress) Printf(w io.Writer, format string, args ...any) {
	p.bar.Printf(w, format, args...)
}

// Close takes the bar off the screen.
func (p *queueProgress) Close() {
	p.close.Do(func() {
		p.stop()
		p.bar.Close()
	})
}
