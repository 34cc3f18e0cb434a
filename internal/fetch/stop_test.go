package fetch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestFetcherStops(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      Config
		limit    int
		messages int
	}{
		{name: "while receiving nothing", cfg: Config{WaitTime: 0, Fetchers: 2}, limit: 10},
		{name: "while waiting for room", cfg: Config{WaitTime: time.Second, Fetchers: 2}, limit: 10, messages: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{ReceiveMessageFunc: func(_ context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
				return &sqs.ReceiveMessageOutput{Messages: sqsMessages("m", tt.messages)}, nil
			}}
			tf := newTestFetcher(t, tt.cfg, tt.limit, api)
			r := tf.run(t)
			if tt.messages > 0 {
				receiveN(t, tf.out, tt.messages)
			} else {
				testkit.Eventually(t, 10*time.Second, "a few empty receives", func() bool { return testkit.Value(tf.metrics.ReceiveEmpty) >= 3 })
			}
			if err := r.stop(); err != nil {
				t.Errorf("Run = %v; want nil", err)
			}
			checkClosedEmpty(t, tf.out)
			if got := tf.leases.inUse(); got != tt.messages {
				t.Errorf("limiter InUse = %d; want %d (one per lease)", got, tt.messages)
			}
		})
	}
}

func TestFetcherReleasesMessagesReceivedAfterStop(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	proceed := make(chan struct{})
	var pollCtxErr atomic.Value
	api := &fakeAPI{}
	api.ReceiveMessageFunc = func(ctx context.Context, _ *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		if api.calls.Load() > 1 {
			return nil, errors.New("only one receive expected")
		}
		close(entered)
		<-proceed
		pollCtxErr.Store(fmt.Sprint(ctx.Err()))
		return &sqs.ReceiveMessageOutput{Messages: sqsMessages("late", 2)}, nil
	}
	tf := newTestFetcher(t, Config{WaitTime: 20 * time.Second}, 10, api)
	r := tf.run(t)
	<-entered

	r.stopAsync()
	// Stop cannot return while its poll is out: the poll is not cancelled.
	if r.returned() {
		t.Fatal("the fetchers stopped while a long poll was still waiting")
	}
	close(proceed)
	if err := r.wait(); err != nil {
		t.Errorf("Run = %v; want nil", err)
	}

	if got := pollCtxErr.Load(); got != "<nil>" {
		t.Errorf("the long poll's context was cancelled (%v); a waiting poll must not be cancelled", got)
	}
	released := tf.leases.releasedMessages()
	if len(released) != 2 {
		t.Fatalf("released %d messages; want the 2 received after stop", len(released))
	}
	for _, m := range released {
		if !tf.leases.has(m) {
			t.Errorf("%s released without being registered", m.ID)
		}
	}
	tf.leases.mu.Lock()
	if tf.leases.releaseCtxErr != nil {
		t.Errorf("Release got a done context (%v); it must outlive the stop", tf.leases.releaseCtxErr)
	}
	tf.leases.mu.Unlock()
	checkClosedEmpty(t, tf.out)
}

// runWaitingPolls starts a fetcher with two long polls that wait until
// they are cancelled, and returns once both are waiting.
func runWaitingPolls(t *testing.T) (*testFetcher, *runner) {
	t.Helper()
	entered := make(chan struct{}, 2)
	api := &fakeAPI{ReceiveMessageFunc: func(ctx context.Context, _ *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	tf := newTestFetcher(t, Config{Fetchers: 2, WaitTime: 20 * time.Second}, 20, api)
	r := tf.run(t)
	<-entered
	<-entered
	return tf, r
}

func TestFetcherStopDeadlineCancelsWaitingPolls(t *testing.T) {
	t.Parallel()
	tf, r := runWaitingPolls(t)
	r.stopAsync()
	if r.returned() {
		t.Fatal("Run returned while its polls were waiting")
	}
	r.cancel() // Stop's context ends: the polls still waiting are cancelled
	if err := r.wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Stop = %v; want context.Canceled", err)
	}
	checkClosedEmpty(t, tf.out)
	if got := tf.leases.inUse(); got != 0 {
		t.Errorf("limiter InUse = %d after aborted polls; want 0", got)
	}
}

// TestFetcherCancelWaitingPolls: before Stop it leaves the polls alone;
// after, it ends the polls still waiting, Stop returns nil, the room they
// held is given back, and each cancelled poll is counted.
func TestFetcherCancelWaitingPolls(t *testing.T) {
	t.Parallel()
	tf, r := runWaitingPolls(t)
	tf.CancelWaitingPolls() // not stopping: does nothing
	r.stopAsync()
	if r.returned() {
		t.Fatal("the fetchers stopped while their polls were waiting")
	}
	if got := testkit.Value(tf.metrics.ReceivesCancelled); got != 0 {
		t.Fatalf("%v polls counted cancelled before Stop; want 0", got)
	}
	tf.CancelWaitingPolls()
	if err := r.wait(); err != nil {
		t.Errorf("Stop = %v; want nil", err)
	}
	checkClosedEmpty(t, tf.out)
	if got := tf.leases.inUse(); got != 0 {
		t.Errorf("limiter InUse = %d after cancelled polls; want 0", got)
	}
	if got := testkit.Value(tf.metrics.ReceivesCancelled); got != 2 {
		t.Errorf("sqsworker_receives_cancelled_total = %v; want 2", got)
	}
}

func TestFetcherStopBeforeStart(t *testing.T) {
	t.Parallel()
	tf := newTestFetcher(t, Config{}, 10, &fakeAPI{})
	for i := range 2 {
		if err := tf.Stop(t.Context()); err != nil {
			t.Errorf("Stop #%d before Start = %v; want nil", i+1, err)
		}
	}
	if err := tf.Start(t.Context()); err == nil {
		t.Error("Start after Stop = nil; want an error")
	}
}

// TestFetcherWithoutQueueURLDoesNotStart: a Fetcher given no queue URL
// refuses to start and sends no receive, which an endpoint could answer
// with an empty success as fast as it is asked.
func TestFetcherWithoutQueueURLDoesNotStart(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{}
	f := New(Config{Fetchers: 1}, api, newFakeLeases(10), &fakeHealth{}, make(chan *message.Message, 10), zap.NewNop(), metrics.New())
	if err := f.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "QueueURL is required") {
		t.Errorf("Start = %v; want an error naming QueueURL", err)
	}
	if err := f.Stop(t.Context()); err != nil {
		t.Errorf("Stop after a refused Start = %v; want nil", err)
	}
	if n := api.calls.Load(); n != 0 {
		t.Errorf("%d receives sent; want none", n)
	}
}
