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
