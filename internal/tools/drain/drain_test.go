package drain_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
	"github.com/sqsworker/sqsworker/internal/tools/drain"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
	"github.com/sqsworker/sqsworker/internal/tools/tooltest"
)

// roundTripLines are n lines with string, number and binary attributes;
// on a FIFO queue spread over 100 groups, each with a deduplication id.
func roundTripLines(n int, fifo bool) []line.Line {
	lines := tooltest.Lines(n, fifo)
	if fifo {
		for i := range lines {
			lines[i].Attributes["MessageGroupId"] = fmt.Sprintf("g-%d", i%100)
		}
	}
	return lines
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
	report, err := drain.Run(t.Context(), cfg, api, drain.Output{W: f, Sync: f.Sync}, tooltest.Log(t))
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

// TestDrainLoadRoundTrip: a queue drained to a file and the file loaded
// into another queue: the second queue holds exactly the messages of the
// first, bodies, attributes, group and deduplication ids, each once.
func TestDrainLoadRoundTrip(t *testing.T) {
	t.Parallel()
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			t.Parallel()
			const n = 10000
			src := tooltest.CreateQueue(t, server, "drain-src", sqstest.QueueOptions{FIFO: fifo})
			dst := tooltest.CreateQueue(t, server, "drain-dst", sqstest.QueueOptions{FIFO: fifo})
			lines := roundTripLines(n, fifo)
			tooltest.Load(t, server, src.URL, fifo, lines)

			drained, report := drainTo(t, drain.Config{Config: receive.Config{QueueURL: src.URL, FIFO: fifo}}, server.Client())
			if report.Written != n || report.Deleted != n || report.End != receive.Empty {
				t.Errorf("report %+v, want %d written and deleted, ended empty", report, n)
			}
			if d := tooltest.Counts(t, server, src.URL); d != (sqsapi.Counts{}) {
				t.Errorf("drained queue holds %+v, want nothing", d)
			}
			for _, l := range drained {
				if l.QueueURL != src.URL || l.MessageID == "" || l.MD5OfBody != line.MD5(l.Body) {
					t.Fatalf("line %+v: want the queue URL, a message id and the body's MD5", l)
				}
			}
			tooltest.Load(t, server, dst.URL, fifo, drained)

			want := map[string]tooltest.Sent{}
			for _, l := range lines {
				want[l.Body] = tooltest.KeptOf(l)
			}
			got := map[string]tooltest.Sent{}
			count := 0
			for _, m := range tooltest.Collect(t, server, dst.URL, n) {
				s := tooltest.Received(m)
				if !fifo {
					s.Group = want[s.Body].Group // a standard queue need not return MessageGroupId
				}
				got[s.Body] = s
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
	q := tooltest.CreateQueue(t, server, "drain-wait", sqstest.QueueOptions{})
	tooltest.Load(t, server, q.URL, false, tooltest.Lines(n, false))
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
	q := tooltest.CreateQueue(t, server, "drain-keep", sqstest.QueueOptions{})
	tooltest.Load(t, server, q.URL, false, tooltest.Lines(n, false))
	drained, report := drainTo(t, drain.Config{Config: receive.Config{QueueURL: q.URL}, Keep: true}, server.Client())
	bodies := map[string]int{}
	for _, l := range drained {
		bodies[l.Body]++
	}
	if len(drained) != n || len(bodies) != n || report.Kept != n || report.Deleted != 0 {
		t.Errorf("kept %d, wrote %d lines (%d distinct), deleted %d; want each of %d written once, none deleted",
			report.Kept, len(drained), len(bodies), report.Deleted, n)
	}
	if d := tooltest.Counts(t, server, q.URL); d.Visible != n || d.InFlight != 0 {
		t.Errorf("after drain --keep the queue holds %+v, want all %d visible", d, n)
	}
}

// TestDrainMaxReadsThatMany: MaxMessages ends the drain after that many,
// deleting just those.
func TestDrainMaxReadsThatMany(t *testing.T) {
	t.Parallel()
	const n, limit = 200, 35
	q := tooltest.CreateQueue(t, server, "drain-max", sqstest.QueueOptions{})
	tooltest.Load(t, server, q.URL, false, tooltest.Lines(n, false))
	drained, report := drainTo(t, drain.Config{Config: receive.Config{QueueURL: q.URL, MaxMessages: limit}}, server.Client())
	if len(drained) != limit || report.Deleted != limit || report.End != receive.Limit {
		t.Errorf("report %+v with %d lines, want %d written and deleted", report, len(drained), limit)
	}
	testkit.Eventually(t, time.Minute, "the rest visible again", func() bool {
		d := tooltest.Counts(t, server, q.URL)
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
	q := tooltest.CreateQueue(t, server, "drain-fail", sqstest.QueueOptions{})
	tooltest.Load(t, server, q.URL, false, tooltest.Lines(n, false))
	w := &failingWriter{ok: 60 << 10}
	report, err := drain.Run(t.Context(), drain.Config{Config: receive.Config{QueueURL: q.URL, WaitTime: time.Second}},
		server.Client(), drain.Output{W: w}, tooltest.Log(t))
	if err == nil || report.Written == 0 || report.Written == n {
		t.Fatalf("drain into a failing writer: %v, report %+v; want it to stop with some written", err, report)
	}
	written := bytes.Count(w.Bytes(), []byte("\n"))
	if written != report.Written || report.Deleted != report.Written {
		t.Errorf("%d lines in the output, report %+v: want as many written and deleted", written, report)
	}
	d := tooltest.Counts(t, server, q.URL)
	if d.Visible+d.InFlight != int64(n-written) || d.InFlight != 0 {
		t.Errorf("queue holds %+v after %d written: want the other %d visible", d, written, n-written)
	}
}
