package receive_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/fetch"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/startstop"
	"github.com/sqsworker/sqsworker/internal/testkit"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
	"github.com/sqsworker/sqsworker/internal/tools/tooltest"
)

// start creates and starts a Receiver of cfg's queue (WaitTime 1s unless
// set), closing it at the end of the test if the test did not.
func start(t *testing.T, cfg receive.Config) *receive.Receiver {
	t.Helper()
	if cfg.WaitTime == 0 {
		cfg.WaitTime = time.Second
	}
	r, err := receive.New(cfg, server.Client(), tooltest.Log(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// readAll takes every message until Messages is closed, settling each
// with settle, and returns the bodies read.
func readAll(t *testing.T, r *receive.Receiver, settle func(msg *message.Message)) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var bodies []string
	for {
		msg, err := r.Next(ctx, func() error { return nil })
		if err != nil {
			t.Fatalf("after %d messages: %v", len(bodies), err)
		}
		if msg == nil {
			return bodies
		}
		bodies = append(bodies, msg.Body)
		settle(msg)
	}
}

func send(t *testing.T, url string, bodies []string) {
	t.Helper()
	if err := server.SendBodies(t.Context(), url, bodies, nil); err != nil {
		t.Fatal(err)
	}
}

// sorted is bodies, sorted.
func sorted(bodies []string) []string {
	out := slices.Clone(bodies)
	slices.Sort(out)
	return out
}

// visibleNow is what another consumer receives from the queue now,
// deleting it: a receive is what makes the local server expire
// visibility timeouts, so this sees what is really visible.
func visibleNow(t *testing.T, url string) []string {
	t.Helper()
	var got []string
	for {
		out, err := server.Client().ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return sorted(got)
		}
		for _, m := range out.Messages {
			got = append(got, aws.ToString(m.Body))
			if _, err := server.Client().DeleteMessage(t.Context(), &sqs.DeleteMessageInput{
				QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestReceiveReadsTheQueueToItsEnd: every message is read once, the run
// ends Empty, and what it deleted is gone from the queue.
func TestReceiveReadsTheQueueToItsEnd(t *testing.T) {
	t.Parallel()
	const n = 300
	q := tooltest.CreateQueue(t, server, "receive-all", sqstest.QueueOptions{})
	want := tooltest.Bodies("all", n)
	send(t, q.URL, want)
	r := start(t, receive.Config{QueueURL: q.URL, InFlight: 50})
	got := readAll(t, r, func(msg *message.Message) { r.Delete(t.Context(), msg) })
	if end, left := r.End(); end != receive.Empty || left != (sqsapi.Counts{}) {
		t.Errorf("end %v with %+v left, want Empty with nothing left", end, left)
	}
	if err := r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Errorf("read %d messages (%d distinct), want each of %d once", len(got), len(slices.Compact(sorted(got))), n)
	}
	if r.Deleted() != n {
		t.Errorf("%d deletes confirmed, want %d", r.Deleted(), n)
	}
	if c := tooltest.Counts(t, server, q.URL); c != (sqsapi.Counts{}) {
		t.Errorf("the queue holds %+v after the run, want nothing", c)
	}
}

// TestReceiveHoldKeepsMessagesUntilClose: held messages stay invisible,
// their leases extended by the heartbeats, for three visibility timeouts
// and more: no other consumer and no later poll of the run receives
// them. Close makes them visible again at once, deleting none.
func TestReceiveHoldKeepsMessagesUntilClose(t *testing.T) {
	t.Parallel()
	const n = 30
	const vt = 2 * time.Second
	q := tooltest.CreateQueue(t, server, "receive-hold", sqstest.QueueOptions{})
	want := tooltest.Bodies("hold", n)
	send(t, q.URL, want)
	r := start(t, receive.Config{QueueURL: q.URL, VisibilityTimeout: vt})
	got := readAll(t, r, r.Hold)
	if end, _ := r.End(); end != receive.Empty || r.Held() != n {
		t.Fatalf("end %v holding %d, want Empty holding all %d", end, r.Held(), n)
	}
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Errorf("read %d messages, want each of %d once", len(got), n)
	}
	// A heartbeat round comes every Tick (a third of the timeout): nine
	// rounds after the last message was read are three timeouts.
	rounds := testkit.Value(r.Metrics().HeartbeatRounds)
	testkit.Eventually(t, time.Minute, "heartbeat rounds over three visibility timeouts", func() bool {
		return testkit.Value(r.Metrics().HeartbeatRounds) >= rounds+9
	})
	if seen := visibleNow(t, q.URL); len(seen) > 0 {
		t.Fatalf("another consumer received %d held messages", len(seen))
	}
	if lost := testkit.Value(r.Metrics().LeasesLost); lost > 0 {
		t.Errorf("%v leases lost while held", lost)
	}
	if err := r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r.Deleted() != 0 || testkit.Value(r.Metrics().MessagesReleased) != n {
		t.Errorf("Close deleted %d, released %v; want all %d released, none deleted", r.Deleted(), testkit.Value(r.Metrics().MessagesReleased), n)
	}
	if seen := visibleNow(t, q.URL); !slices.Equal(seen, sorted(want)) {
		t.Errorf("after Close another consumer received %d messages, want all %d", len(seen), n)
	}
}

// TestReceiveDeletesOnlyWhatItWasTold: of the messages read, those the
// run deleted are gone and those it held are back in the queue; messages
// still buffered when the run stops early are released, not deleted.
func TestReceiveDeletesOnlyWhatItWasTold(t *testing.T) {
	t.Parallel()
	t.Run("delete and hold", func(t *testing.T) {
		t.Parallel()
		q := tooltest.CreateQueue(t, server, "receive-some", sqstest.QueueOptions{})
		send(t, q.URL, tooltest.Bodies("some", 100))
		r := start(t, receive.Config{QueueURL: q.URL})
		var deleted, held []string
		readAll(t, r, func(msg *message.Message) {
			var n int
			_, _ = fmt.Sscanf(msg.Body, "some-%d", &n)
			if n%2 == 0 {
				deleted = append(deleted, msg.Body)
				r.Delete(t.Context(), msg)
				return
			}
			held = append(held, msg.Body)
			r.Hold(msg)
		})
		if err := r.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(deleted) != 50 || r.Deleted() != 50 {
			t.Errorf("told to delete %d, %d deletes confirmed; want 50", len(deleted), r.Deleted())
		}
		if seen := visibleNow(t, q.URL); !slices.Equal(seen, sorted(held)) {
			t.Errorf("the queue holds %d messages after the run, want the %d held", len(seen), len(held))
		}
	})
	t.Run("stopped early", func(t *testing.T) {
		t.Parallel()
		const n, read = 100, 10
		q := tooltest.CreateQueue(t, server, "receive-stop", sqstest.QueueOptions{})
		send(t, q.URL, tooltest.Bodies("stop", n))
		r := start(t, receive.Config{QueueURL: q.URL, InFlight: 30})
		var deleted []string
		for msg := range r.Messages() {
			deleted = append(deleted, msg.Body)
			r.Delete(t.Context(), msg)
			if len(deleted) == read {
				break
			}
		}
		if err := r.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if end, _ := r.End(); end != receive.Stopped {
			t.Errorf("end %v, want Stopped", end)
		}
		seen := visibleNow(t, q.URL)
		if len(seen) != n-read || r.Deleted() != read {
			t.Errorf("after a stop the queue holds %d messages, %d deletes confirmed; want %d left and %d deleted", len(seen), r.Deleted(), n-read, read)
		}
		for _, b := range deleted {
			if _, found := slices.BinarySearch(seen, b); found {
				t.Errorf("deleted message %s is still in the queue", b)
			}
		}
	})
}

// TestReceiveEnd: how a run ends. An empty queue ends Empty at once; a
// delayed message keeps the run going until it came and was read;
// MaxMessages ends it at the limit; on a FIFO queue, messages waiting
// behind a held message of their group end it Blocked; a missing queue
// ends it Failed.
func TestReceiveEnd(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		fifo bool
		// fill puts the messages in the queue and returns how many the
		// run is to read.
		fill     func(t *testing.T, q sqstest.Queue) int
		cfg      receive.Config
		hold     bool
		missing  bool
		want     receive.End
		wantLeft sqsapi.Counts
	}{
		{name: "empty queue", fill: func(*testing.T, sqstest.Queue) int { return 0 }, want: receive.Empty},
		{name: "delayed message", fill: func(t *testing.T, q sqstest.Queue) int {
			send(t, q.URL, tooltest.Bodies("now", 5))
			if _, err := server.Client().SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(q.URL),
				MessageBody: aws.String("later"), DelaySeconds: 3}); err != nil {
				t.Fatal(err)
			}
			return 6
		}, want: receive.Empty},
		{name: "limit", fill: func(t *testing.T, q sqstest.Queue) int {
			send(t, q.URL, tooltest.Bodies("limit", 40))
			return 7
		}, cfg: receive.Config{MaxMessages: 7}, want: receive.Limit},
		{name: "fifo group blocked", fifo: true, hold: true, fill: func(t *testing.T, q sqstest.Queue) int {
			if err := server.SendBodies(t.Context(), q.URL, tooltest.Bodies("fifo", 3), func(int) string { return "g" }); err != nil {
				t.Fatal(err)
			}
			return 1
		}, want: receive.Blocked, wantLeft: sqsapi.Counts{Visible: 2, InFlight: 1}},
		{name: "missing queue", missing: true, fill: func(*testing.T, sqstest.Queue) int { return 0 }, want: receive.Failed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := tooltest.CreateQueue(t, server, "receive-end", sqstest.QueueOptions{FIFO: tt.fifo})
			n := tt.fill(t, q)
			cfg := tt.cfg
			cfg.QueueURL, cfg.FIFO = q.URL, tt.fifo
			if tt.missing {
				cfg.QueueURL += "-missing"
			}
			r := start(t, cfg)
			got := readAll(t, r, func(msg *message.Message) {
				if tt.hold {
					r.Hold(msg)
				} else {
					r.Delete(t.Context(), msg)
				}
			})
			// Close is what ends a run; End is read after it, as the tools
			// do: the fetchers close Messages a moment before a Limit or
			// Failed end is recorded.
			if err := r.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			end, left := r.End()
			if end != tt.want || len(got) != n || left != tt.wantLeft {
				t.Errorf("end %v after %d messages with %+v left; want %v after %d with %+v", end, len(got), left, tt.want, n, tt.wantLeft)
			}
			if err := r.Err(); tt.missing != (err != nil) || tt.missing && !errors.Is(err, fetch.ErrQueueMissing) {
				t.Errorf("Err %v, want one only for the missing queue, saying so", err)
			}
		})
	}
}

// TestReceiveLifecycle: Close before Start, and Close twice, are
// harmless; a second Start is refused.
func TestReceiveLifecycle(t *testing.T) {
	t.Parallel()
	q := tooltest.CreateQueue(t, server, "receive-life", sqstest.QueueOptions{})
	r, err := receive.New(receive.Config{QueueURL: q.URL, WaitTime: time.Second}, server.Client(), tooltest.Log(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(t.Context()); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	if err := r.Start(t.Context()); !errors.Is(err, startstop.ErrStarted) {
		t.Errorf("Start after Close: %v, want ErrStarted", err)
	}

	r = start(t, receive.Config{QueueURL: q.URL})
	if err := r.Start(t.Context()); !errors.Is(err, startstop.ErrStarted) {
		t.Errorf("second Start: %v, want ErrStarted", err)
	}
	for i := range 2 {
		if err := r.Close(t.Context()); err != nil {
			t.Errorf("Close %d: %v", i+1, err)
		}
	}
	if _, ok := <-r.Messages(); ok {
		t.Errorf("Messages open after Close")
	}
}
