package tools_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
	"github.com/sqsworker/sqsworker/internal/tools/drain"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/load"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
)

func testLog(t *testing.T) *zap.Logger { return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)) }

// roundTripLines are n lines with string, number and binary attributes;
// on a FIFO queue spread over 100 groups, each with a deduplication id.
func roundTripLines(n int, fifo bool) []line.Line {
	lines := testLines(n, fifo)
	if fifo {
		for i := range lines {
			lines[i].Attributes["MessageGroupId"] = fmt.Sprintf("g-%d", i%100)
		}
	}
	return lines
}

func loadLines(t *testing.T, url string, fifo bool, lines []line.Line) {
	t.Helper()
	r, err := load.Run(t.Context(), load.Config{QueueURL: url, FIFO: fifo}, server.Client(), file(t, lines))
	if err != nil || !r.OK() {
		t.Fatalf("load %d lines: %v; %+v", len(lines), err, r)
	}
}

// drainTo drains the queue into a file and returns its lines.
func drainTo(t *testing.T, cfg drain.Config, api receive.API) ([]line.Line, drain.Report) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "drained.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if cfg.WaitTime == 0 {
		cfg.WaitTime = time.Second
	}
	report, err := drain.Run(t.Context(), cfg, api, drain.Output{W: f, Sync: f.Sync}, testLog(t))
	if err != nil {
		t.Fatalf("drain: %v (report %+v)", err, report)
	}
	return readLines(t, path), report
}

func readLines(t *testing.T, path string) []line.Line {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out []line.Line
	r := line.NewReader(f)
	for {
		l, n, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("line %d: %v", n, err)
		}
		out = append(out, l)
	}
}

// collect receives and deletes every message of the queue, several polls
// at once, until n have come.
func collect(t *testing.T, url string, n int) []types.Message {
	t.Helper()
	c := server.Client()
	var mu sync.Mutex
	var got []types.Message
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				done := len(got) >= n
				mu.Unlock()
				if done {
					return
				}
				out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
					MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
					MessageAttributeNames:       []string{"All"},
				})
				if err != nil || len(out.Messages) == 0 {
					continue
				}
				var del []types.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if _, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: del}); err != nil {
					t.Error(err)
				}
				mu.Lock()
				got = append(got, out.Messages...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) < n {
		t.Fatalf("collected %d of %d messages from %s", len(got), n, url)
	}
	return got
}

// TestDrainLoadRoundTrip: a queue drained to a file and the file loaded
// into another queue: the second queue holds exactly the messages of the
// first, bodies, attributes, group and deduplication ids, each once.
func TestDrainLoadRoundTrip(t *testing.T) {
	t.Parallel()
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			t.Parallel()
			const n = 10000
			src := createQueue(t, "drain-src", sqstest.QueueOptions{FIFO: fifo})
			dst := createQueue(t, "drain-dst", sqstest.QueueOptions{FIFO: fifo})
			lines := roundTripLines(n, fifo)
			loadLines(t, src.URL, fifo, lines)

			drained, report := drainTo(t, drain.Config{Config: receive.Config{QueueURL: src.URL, FIFO: fifo}}, server.Client())
			if report.Written != n || report.Deleted != n || report.End != receive.Empty {
				t.Errorf("report %+v, want %d written and deleted, ended empty", report, n)
			}
			if d := counts(t, src.URL); d != (sqsapi.Counts{}) {
				t.Errorf("drained queue holds %+v, want nothing", d)
			}
			for _, l := range drained {
				if l.QueueURL != src.URL || l.MessageID == "" || l.MD5OfBody != line.MD5(l.Body) {
					t.Fatalf("line %+v: want the queue URL, a message id and the body's MD5", l)
				}
			}
			loadLines(t, dst.URL, fifo, drained)

			want := map[string]sent{}
			for _, l := range lines {
				want[l.Body] = keptOf(l)
			}
			got := map[string]sent{}
			count := 0
			for _, m := range collect(t, dst.URL, n) {
				s := received(m)
				if !fifo {
					s.group = want[s.body].group // a standard queue need not return MessageGroupId
				}
				got[s.body] = s
				count++
			}
			if count != n || len(got) != n {
				t.Errorf("reloaded queue held %d messages, %d distinct; want %d", count, len(got), n)
			}
			if !reflect.DeepEqual(got, want) {
				for k := range want {
					if !reflect.DeepEqual(got[k], want[k]) {
						t.Fatalf("reloaded queue differs; first: got %+v, want %+v", got[k], want[k])
					}
				}
			}
		})
	}
}

// earlyEmptyAPI answers the first receives empty at once, as a server
// does when one message wakes several waiting polls.
type earlyEmptyAPI struct {
	receive.API
	empties atomic.Int32
}

func (e *earlyEmptyAPI) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if e.empties.Add(-1) >= 0 {
		return &sqs.ReceiveMessageOutput{}, nil
	}
	return e.API.ReceiveMessage(ctx, in, opts...)
}

// TestDrainEndsOnlyWhenTheQueueIsEmpty: early empty receives do not end a
// drain, nor do messages another consumer holds in flight: the drain
// waits for them to come back and writes them too.
func TestDrainEndsOnlyWhenTheQueueIsEmpty(t *testing.T) {
	t.Parallel()
	const n, taken = 50, 5
	q := createQueue(t, "drain-wait", sqstest.QueueOptions{})
	loadLines(t, q.URL, false, testLines(n, false))
	out, err := server.Client().ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(q.URL), MaxNumberOfMessages: taken, VisibilityTimeout: 3,
	})
	if err != nil || len(out.Messages) != taken {
		t.Fatalf("another consumer took %d messages: %v", len(out.Messages), err)
	}
	api := &earlyEmptyAPI{API: server.Client()}
	api.empties.Store(20)
	drained, report := drainTo(t, drain.Config{Config: receive.Config{QueueURL: q.URL}}, api)
	bodies := map[string]bool{}
	for _, l := range drained {
		bodies[l.Body] = true
	}
	if len(drained) != n || len(bodies) != n || report.Deleted != n {
		t.Errorf("drained %d lines (%d distinct), deleted %d; want all %d, the other consumer's too", len(drained), len(bodies), report.Deleted, n)
	}
}

// TestDrainKeepHoldsEachMessageOnceThenReleasesAll: with Keep, every
// message is written once (none is received again while held) and all
// are visible in the queue afterwards.
func TestDrainKeepHoldsEachMessageOnceThenReleasesAll(t *testing.T) {
	t.Parallel()
	const n = 500
	q := createQueue(t, "drain-keep", sqstest.QueueOptions{})
	loadLines(t, q.URL, false, testLines(n, false))
	drained, report := drainTo(t, drain.Config{Config: receive.Config{QueueURL: q.URL}, Keep: true}, server.Client())
	bodies := map[string]int{}
	for _, l := range drained {
		bodies[l.Body]++
	}
	if len(drained) != n || len(bodies) != n || report.Kept != n || report.Deleted != 0 {
		t.Errorf("kept %d, wrote %d lines (%d distinct), deleted %d; want each of %d written once, none deleted",
			report.Kept, len(drained), len(bodies), report.Deleted, n)
	}
	if d := counts(t, q.URL); d.Visible != n || d.InFlight != 0 {
		t.Errorf("after drain --keep the queue holds %+v, want all %d visible", d, n)
	}
}

// TestDrainMaxReadsThatMany: MaxMessages ends the drain after that many,
// deleting just those.
func TestDrainMaxReadsThatMany(t *testing.T) {
	t.Parallel()
	const n, limit = 200, 35
	q := createQueue(t, "drain-max", sqstest.QueueOptions{})
	loadLines(t, q.URL, false, testLines(n, false))
	drained, report := drainTo(t, drain.Config{Config: receive.Config{QueueURL: q.URL, MaxMessages: limit}}, server.Client())
	if len(drained) != limit || report.Deleted != limit || report.End != receive.Limit {
		t.Errorf("report %+v with %d lines, want %d written and deleted", report, len(drained), limit)
	}
	testkit.Eventually(t, time.Minute, "the rest visible again", func() bool {
		d := counts(t, q.URL)
		return d.Visible == n-limit && d.InFlight == 0
	})
}

// failingWriter takes ok bytes, then fails.
type failingWriter struct {
	bytes.Buffer
	ok int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) > w.ok {
		return 0, errors.New("disk full")
	}
	return w.Buffer.Write(p)
}

// TestDrainOutputFailureDeletesNothingUnwritten: when the output fails,
// the drain stops; only what was written is deleted, the rest is visible
// in the queue again.
func TestDrainOutputFailureDeletesNothingUnwritten(t *testing.T) {
	t.Parallel()
	const n = 300
	q := createQueue(t, "drain-fail", sqstest.QueueOptions{})
	loadLines(t, q.URL, false, testLines(n, false))
	w := &failingWriter{ok: 60 << 10}
	report, err := drain.Run(t.Context(), drain.Config{Config: receive.Config{QueueURL: q.URL, WaitTime: time.Second}},
		server.Client(), drain.Output{W: w}, testLog(t))
	if err == nil || report.Written == 0 || report.Written == n {
		t.Fatalf("drain into a failing writer: %v, report %+v; want it to stop with some written", err, report)
	}
	written := bytes.Count(w.Bytes(), []byte("\n"))
	if written != report.Written || report.Deleted != report.Written {
		t.Errorf("%d lines in the output, report %+v: want as many written and deleted", written, report)
	}
	d := counts(t, q.URL)
	if d.Visible+d.InFlight != int64(n-written) || d.InFlight != 0 {
		t.Errorf("queue holds %+v after %d written: want the other %d visible", d, written, n-written)
	}
}
