package replay_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
	"github.com/sqsworker/sqsworker/internal/tools/replay"
	"github.com/sqsworker/sqsworker/internal/tools/tooltest"
)

// seen records the bodies a handler was given.
type seen struct {
	mu     sync.Mutex
	bodies map[string]int
	ids    map[string]string // body → message id
}

func (s *seen) handler(fail func(body string) error) handler.Handler {
	s.bodies, s.ids = map[string]int{}, map[string]string{}
	return handler.Func(func(_ context.Context, msg *message.Message) error {
		s.mu.Lock()
		s.bodies[msg.Body]++
		s.ids[msg.Body] = msg.ID
		s.mu.Unlock()
		return fail(msg.Body)
	})
}

// TestReplayStopsAtTheFirstFailureThenAFixedHandlerEmptiesTheQueue: a
// broken handler stops the replay at its first failure, naming the
// message, which is still in the queue, visible; what succeeded before it
// is deleted. A fixed handler then empties the queue.
func TestReplayStopsAtTheFirstFailureThenAFixedHandlerEmptiesTheQueue(t *testing.T) {
	t.Parallel()
	const n = 40
	dlq := tooltest.CreateQueue(t, server, "replay-dlq", sqstest.QueueOptions{})
	if err := server.SendBodies(t.Context(), dlq.URL, tooltest.Bodies("replay", n), nil); err != nil {
		t.Fatal(err)
	}
	cfg := replay.Config{Config: receive.Config{QueueURL: dlq.URL, WaitTime: time.Second}}
	broken := errors.New("schema v2 not supported")
	var s seen
	report, err := replay.Run(t.Context(), cfg, server.Client(), s.handler(func(body string) error {
		if body == "replay-17" {
			return broken
		}
		return nil
	}), tooltest.Log(t))
	var f *replay.Failure
	if !errors.As(err, &f) || !errors.Is(err, broken) || f.MessageID != s.ids["replay-17"] {
		t.Fatalf("replay with a broken handler: %v; want the failure of message %s", err, s.ids["replay-17"])
	}
	if report.Failed != 1 || report.Deleted != report.Succeeded || report.Succeeded != len(s.bodies)-1 {
		t.Errorf("report %+v after %d messages handled; want each success deleted, one failure", report, len(s.bodies))
	}
	if d := tooltest.Counts(t, server, dlq.URL); d.Visible != int64(n-report.Deleted) || d.InFlight != 0 {
		t.Errorf("after the failure the queue holds %+v, want the %d not deleted visible", d, n-report.Deleted)
	}

	var fixed seen
	report, err = replay.Run(t.Context(), cfg, server.Client(), fixed.handler(func(string) error { return nil }), tooltest.Log(t))
	if err != nil || report.End != receive.Empty {
		t.Fatalf("replay with a fixed handler: %v; report %+v", err, report)
	}
	if fixed.bodies["replay-17"] != 1 || report.Deleted+len(s.bodies)-1 != n {
		t.Errorf("the fixed handler saw %d messages (the failed one %d times), deleted %d; want the other %d, each once",
			len(fixed.bodies), fixed.bodies["replay-17"], report.Deleted, n-len(s.bodies)+1)
	}
	if d := tooltest.Counts(t, server, dlq.URL); d != (sqsapi.Counts{}) {
		t.Errorf("after the fixed replay the queue holds %+v, want nothing", d)
	}
}

// batches is a batch handler of size that records its batches and fails
// the bodies fail names.
type batches struct {
	size  int
	fail  map[string]bool
	mu    sync.Mutex
	sizes []int
	seen  map[string]int
}

func (b *batches) Handle(ctx context.Context, msg *message.Message) error {
	return b.HandleBatch(ctx, []*message.Message{msg})[0]
}

func (b *batches) HandleBatch(_ context.Context, msgs []*message.Message) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sizes = append(b.sizes, len(msgs))
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		b.seen[m.Body]++
		if b.fail[m.Body] {
			errs[i] = errors.New("refused in its batch")
		}
	}
	return errs
}

func (b *batches) Batching() (int, time.Duration) { return b.size, 0 }

// TestReplayBatches: with a batch handler the replay hands it batches, at
// most its size each, and a message failed in a batch stops the run as
// any failure does, named, and still in the queue.
func TestReplayBatches(t *testing.T) {
	t.Parallel()
	const n = 50
	dlq := tooltest.CreateQueue(t, server, "replay-batches", sqstest.QueueOptions{})
	if err := server.SendBodies(t.Context(), dlq.URL, tooltest.Bodies("batch", n), nil); err != nil {
		t.Fatal(err)
	}
	cfg := replay.Config{Config: receive.Config{QueueURL: dlq.URL, WaitTime: time.Second}}
	b := &batches{size: 10, seen: map[string]int{}}
	report, err := replay.Run(t.Context(), cfg, server.Client(), b, tooltest.Log(t))
	if err != nil || report.Deleted != n {
		t.Fatalf("replay: %v, report %+v; want all %d deleted", err, report, n)
	}
	most := 0
	for _, s := range b.sizes {
		most = max(most, s)
	}
	if most < 2 || most > b.size || len(b.seen) != n {
		t.Errorf("batches %v for %d messages: want batches of up to %d", b.sizes, len(b.seen), b.size)
	}

	if err := server.SendBodies(t.Context(), dlq.URL, tooltest.Bodies("again", n), nil); err != nil {
		t.Fatal(err)
	}
	b = &batches{size: 10, seen: map[string]int{}, fail: map[string]bool{"again-7": true}}
	report, err = replay.Run(t.Context(), cfg, server.Client(), b, tooltest.Log(t))
	var f *replay.Failure
	if !errors.As(err, &f) || report.Failed != 1 {
		t.Fatalf("replay with a message failed in its batch: %v, report %+v; want that failure", err, report)
	}
	if d := tooltest.Counts(t, server, dlq.URL); d.Visible != int64(n-report.Deleted) {
		t.Errorf("after the failure the queue holds %+v, want the %d not deleted visible", d, n-report.Deleted)
	}
}
