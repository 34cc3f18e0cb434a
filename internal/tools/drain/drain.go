// Package drain saves a queue as lines (the line format), streaming: a
// message is deleted only once its line is written and synced, a batch of
// lines per sync, and no more messages are held in memory than the
// receiver's in-flight room, however long the queue.
package drain

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
)

// Config configures a drain.
type Config struct {
	receive.Config
	// Keep deletes nothing: every message read is held invisible for the
	// run (heartbeats extend its lease) and made visible again at the end,
	// so that each is read once.
	Keep bool
	// OnProgress is told the counts after each batch of lines is synced.
	// Calls do not overlap.
	OnProgress func(Report)
}

// Output is where the lines go.
type Output struct {
	W io.Writer
	// Sync makes what was written to W durable (fsync); nil when W cannot
	// be synced (a pipe, a terminal): then a line counts as written once
	// W took it.
	Sync func() error
}

// Report is what a drain did.
type Report struct {
	// Written is the lines written and synced.
	Written int
	// Deleted is the deletes SQS confirmed, known once Run returns.
	Deleted int
	// Kept is the messages held with Keep and released at the end.
	Kept int
	// End is why receiving ended; Left is the queue's counts then, when
	// it ended Empty or Blocked.
	End  receive.End
	Left sqsapi.Counts
}

const (
	// maxBatch is the most lines written between two syncs.
	maxBatch = 100
	// bufferSize is the output buffer: a batch of small lines in one
	// write.
	bufferSize = 256 << 10
	// closeTimeout bounds the end of a run: the last deletes and the
	// release of what was held.
	closeTimeout = 2 * time.Minute
)

// Run writes every message of the queue to out until the queue is empty
// (or MaxMessages were read), deleting each once its line is synced, or,
// with Keep, holding it and releasing it at the end. It returns an error
// when it stopped early: the output failed, the queue cannot be read, or
// ctx was cancelled. What was written is deleted even then; what was not
// is released.
func Run(ctx context.Context, cfg Config, api receive.API, out Output, log *zap.Logger) (Report, error) {
	r, err := receive.New(cfg.Config, api, log, nil)
	if err != nil {
		return Report{}, err
	}
	if err := r.Start(ctx); err != nil {
		return Report{}, err
	}
	d := &drainer{cfg: cfg, r: r, out: out, buf: bufio.NewWriterSize(out.W, bufferSize)}
	d.lines = line.NewWriter(d.buf)
	err = d.run(ctx)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	if cerr := r.Close(cctx); cerr != nil {
		log.Warn("the end of the drain was cut short; messages not released stay invisible until their visibility timeout", zap.Error(cerr))
	}
	d.report.End, d.report.Left = r.End()
	d.report.Deleted = r.Deleted()
	if err == nil && d.report.End == receive.Failed {
		err = r.Err()
	}
	return d.report, err
}

type drainer struct {
	cfg    Config
	r      *receive.Receiver
	out    Output
	buf    *bufio.Writer
	lines  *line.Writer
	batch  []*message.Message
	report Report
}

// run writes lines until the messages end or ctx is done, syncing a
// batch whenever none is waiting, or maxBatch are written.
func (d *drainer) run(ctx context.Context) error {
	for {
		msg, err := d.r.Next(ctx, func() error { return d.flush(ctx) })
		if err != nil {
			return err
		}
		if msg == nil {
			return d.flush(ctx)
		}
		l := line.FromMessage(msg)
		d.batch = append(d.batch, msg)
		if err := d.lines.Write(&l); err != nil {
			d.fail()
			return fmt.Errorf("write a line: %w", err)
		}
		if len(d.batch) >= maxBatch || ctx.Err() != nil {
			if err := d.flush(ctx); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}

// flush writes the batch out and syncs it, then deletes (or holds) its
// messages. When the output fails, none of them is deleted.
func (d *drainer) flush(ctx context.Context) error {
	if len(d.batch) == 0 {
		return nil
	}
	err := d.buf.Flush()
	if err == nil && d.out.Sync != nil {
		if err = d.out.Sync(); err != nil {
			err = fmt.Errorf("sync: %w", err)
		}
	}
	if err != nil {
		d.fail()
		return fmt.Errorf("write lines: %w", err)
	}
	for _, msg := range d.batch {
		if d.cfg.Keep {
			d.r.Hold(msg)
		} else {
			d.r.Delete(ctx, msg)
		}
	}
	d.report.Written += len(d.batch)
	if d.cfg.Keep {
		d.report.Kept += len(d.batch)
	}
	d.batch = d.batch[:0]
	if d.cfg.OnProgress != nil {
		d.cfg.OnProgress(d.report)
	}
	return nil
}

// fail leaves the batch's messages in the queue: held, so they are
// released at the end rather than left invisible.
func (d *drainer) fail() {
	for _, msg := range d.batch {
		d.r.Hold(msg)
	}
	d.batch = d.batch[:0]
}
