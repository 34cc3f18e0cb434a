// Package load sends a file of lines (the line format) to a queue with
// SendMessageBatch, streaming: at most a few batches are held at once,
// however long the file. Every line ends counted as sent, refused by SQS,
// skipped (it is not a message SQS would take) or not sent (the run
// stopped first), and each one not sent is reported with its number.
package load

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"golang.org/x/time/rate"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/line"
)

const (
	// DefaultSenders is how many batches are sent at once to a standard
	// queue; a FIFO queue gets one at a time, so each group keeps the
	// order of the file.
	DefaultSenders = 4
	// batchEntries is SQS's limit of entries per SendMessageBatch.
	batchEntries = 10
	// sendAttempts bounds the tries of a batch or entry that failed for a
	// reason that may pass (throttling, a 5xx, the network).
	sendAttempts = 5
	retryMin     = 200 * time.Millisecond
	retryMax     = 5 * time.Second
)

// API is what a load needs from SQS.
type API interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Config configures a load.
type Config struct {
	// QueueURL is the queue to send to. Required.
	QueueURL string
	// FIFO sends one batch at a time, with each line's deduplication id.
	FIFO bool
	// Rate caps the messages sent per second; 0 means no cap.
	Rate float64
	// Senders is how many batches are sent at once to a standard queue.
	// Defaults to DefaultSenders.
	Senders int
	// OnProblem is told of each line not sent, as soon as that is known.
	// Calls do not overlap.
	OnProblem func(Problem)
	// OnProgress is told, after each batch, how many bytes of input have
	// been read and the counts so far. Calls do not overlap.
	OnProgress func(read int64, r Report)
}

// Validate checks the fields, naming the one that is wrong.
func (c *Config) Validate() error {
	switch {
	case c.QueueURL == "":
		return &config.FieldError{Field: "QueueURL", Msg: "is required: the queue to send to"}
	case c.Rate < 0:
		return &config.FieldError{Field: "Rate", Msg: "is negative: it must be above 0 messages per second (0: no cap)"}
	case c.Senders < 0 || c.Senders > 64:
		return &config.FieldError{Field: "Senders", Msg: "must be between 1 and 64 (0: the default)"}
	}
	return nil
}

// Kinds of Problem.
const (
	Skipped = "skipped"  // the line is not a message SQS would take
	Refused = "refused"  // SQS refused it
	Unsent  = "not sent" // the run stopped before it was sent
)

// Problem is one line that was not sent.
type Problem struct {
	Line   int
	Kind   string
	Reason string
}

// Report counts what a load did with each line it read (blank lines are
// not counted): Lines = Sent + Refused + Skipped + Unsent.
type Report struct {
	Lines, Sent, Refused, Skipped, Unsent int
	// Complete is true when the input was read to its end.
	Complete bool
	// LastLine is the number of the last line read.
	LastLine int
}

// OK reports whether every line was read and sent.
func (r Report) OK() bool { return r.Complete && r.Sent == r.Lines }

// batch is up to ten entries, at most line.MaxMessageSize in all; entry
// ids are indexes into lines.
type batch struct {
	entries []types.SendMessageBatchRequestEntry
	lines   []int
	size    int
}

type loader struct {
	cfg  Config
	api  API
	read atomic.Int64

	mu     sync.Mutex // guards report and serializes the callbacks
	report Report
}

// Run sends every line of in to the queue. It returns an error only when
// the run stopped before the end of in: the input could not be read, SQS
// cannot be sent to at all (the queue is gone, access is denied, SQS does
// not answer), or ctx was cancelled. Sends under way then finish; the
// lines read but not sent are counted as Unsent.
func Run(ctx context.Context, cfg Config, api API, in io.Reader) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.Senders == 0 {
		cfg.Senders = DefaultSenders
	}
	if cfg.FIFO {
		cfg.Senders = 1
	}
	l := &loader{cfg: cfg, api: api}
	readCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	sendCtx := context.WithoutCancel(ctx) // a send under way is let finish
	batches := make(chan *batch)          // unbuffered: reading waits for a free sender
	var wg sync.WaitGroup
	for range cfg.Senders {
		wg.Go(func() {
			for b := range batches {
				if err := l.send(sendCtx, b, b.entries); err != nil {
					stop(err)
				}
			}
		})
	}
	err := l.readAll(readCtx, &countingReader{r: in, n: &l.read}, batches)
	close(batches)
	wg.Wait()
	if err == nil {
		err = context.Cause(readCtx) // a sender's reason to stop, or ctx's
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.report, err
}

// readAll reads lines into batches until the end of in or ctx is done.
func (l *loader) readAll(ctx context.Context, in io.Reader, batches chan<- *batch) error {
	var lim *rate.Limiter
	if l.cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(l.cfg.Rate), max(1, min(batchEntries, int(l.cfg.Rate))))
	}
	r := line.NewReader(in)
	cur := &batch{}
	flush := func() {
		if len(cur.entries) == 0 {
			return
		}
		select {
		case batches <- cur:
		case <-ctx.Done():
			l.outcome(cur, cur.entries, Unsent, "the run stopped first")
		}
		cur = &batch{}
	}
	defer flush()
	for ctx.Err() == nil {
		ln, n, err := r.Next()
		var le *line.Error
		switch {
		case errors.Is(err, io.EOF):
			l.mu.Lock()
			l.report.Complete = true
			l.mu.Unlock()
			return nil
		case errors.As(err, &le):
			l.skip(n, le.Err.Error())
			continue
		case err != nil:
			return err
		}
		l.mu.Lock()
		l.report.Lines++
		l.report.LastLine = n
		l.mu.Unlock()
		if size := ln.Size(); len(cur.entries) == batchEntries || cur.size+size > line.MaxMessageSize {
			flush()
		}
		var waitErr error
		if lim != nil {
			if lim.Tokens() < 1 {
				flush() // send what is ready rather than hold it while waiting
			}
			waitErr = lim.Wait(ctx)
		}
		cur.add(ln, n, l.cfg.FIFO)
		if waitErr != nil {
			break // the run stopped: cur is counted as not sent
		}
	}
	return nil
}

func (b *batch) add(ln line.Line, n int, fifo bool) {
	b.entries = append(b.entries, ln.Entry(strconv.Itoa(len(b.lines)), fifo))
	b.lines = append(b.lines, n)
	b.size += ln.Size()
}

// send sends entries of b, retrying what may pass and splitting a batch
// SQS refused as a whole, so that each refusal names its line. Its error
// means SQS cannot be sent to at all: the run stops.
func (l *loader) send(ctx context.Context, b *batch, entries []types.SendMessageBatchRequestEntry) error {
	for attempt := 1; ; attempt++ {
		out, err := l.api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(l.cfg.QueueURL), Entries: entries})
		switch {
		case err == nil:
		case sqsapi.IsTransient(err) && attempt < sendAttempts:
			backoff.Sleep(ctx, backoff.Jitter(backoff.Exponential(attempt, retryMin, retryMax)))
			continue
		case stopsTheRun(err):
			l.outcome(b, entries, Unsent, err.Error())
			return err
		case len(entries) > 1:
			for i := range entries {
				if err := l.send(ctx, b, entries[i:i+1]); err != nil {
					l.outcome(b, entries[i+1:], Unsent, err.Error())
					return err
				}
			}
			return nil
		default:
			l.outcome(b, entries, Refused, err.Error())
			return nil
		}
		l.sent(len(out.Successful))
		var retry []types.SendMessageBatchRequestEntry
		for _, f := range out.Failed {
			e, ok := entryByID(entries, aws.ToString(f.Id))
			switch {
			case !ok:
			case sqsapi.IsEntryTransient(f) && attempt < sendAttempts:
				retry = append(retry, e)
			default:
				l.outcome(b, []types.SendMessageBatchRequestEntry{e}, Refused, sqsapi.EntryError(f))
			}
		}
		if len(retry) == 0 {
			return nil
		}
		entries = retry
		backoff.Sleep(ctx, backoff.Jitter(backoff.Exponential(attempt, retryMin, retryMax)))
	}
}

// stopsTheRun tells the errors after which no other line could be sent
// either: the queue is gone, access is denied, or SQS does not answer.
func stopsTheRun(err error) bool {
	if sqsapi.IsQueueMissing(err) || sqsapi.IsTransient(err) {
		return true
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return true // no answer from SQS
	}
	switch ae.ErrorCode() {
	case "AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "UnrecognizedClientException",
		"SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "InvalidSecurity", "RequestExpired",
		"KMS.AccessDeniedException", "KmsAccessDenied", "QueueDeletedRecently":
		return true
	}
	return false
}

func entryByID(entries []types.SendMessageBatchRequestEntry, id string) (types.SendMessageBatchRequestEntry, bool) {
	for _, e := range entries {
		if aws.ToString(e.Id) == id {
			return e, true
		}
	}
	return types.SendMessageBatchRequestEntry{}, false
}

func (l *loader) sent(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.report.Sent += n
	if l.cfg.OnProgress != nil {
		l.cfg.OnProgress(l.read.Load(), l.report)
	}
}

// outcome counts entries of b that were not sent and reports each line.
func (l *loader) outcome(b *batch, entries []types.SendMessageBatchRequestEntry, kind, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range entries {
		i, _ := strconv.Atoi(aws.ToString(e.Id))
		if kind == Refused {
			l.report.Refused++
		} else {
			l.report.Unsent++
		}
		if l.cfg.OnProblem != nil {
			l.cfg.OnProblem(Problem{Line: b.lines[i], Kind: kind, Reason: reason})
		}
	}
}

func (l *loader) skip(n int, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.report.Lines++
	l.report.Skipped++
	l.report.LastLine = n
	if l.cfg.OnProblem != nil {
		l.cfg.OnProblem(Problem{Line: n, Kind: Skipped, Reason: reason})
	}
}

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
