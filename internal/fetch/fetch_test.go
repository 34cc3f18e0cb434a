package fetch

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

func TestFetcherRegistersBeforeSending(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var inputs []*sqs.ReceiveMessageInput
	api := &fakeAPI{ReceiveMessageFunc: func(_ context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		mu.Lock()
		inputs = append(inputs, in)
		mu.Unlock()
		return &sqs.ReceiveMessageOutput{Messages: sqsMessages("m", 3)}, nil
	}}
	// A limit of 10: the first receive takes it all and gives 7 back; the
	// next waits for 10 free, so exactly one receive happens.
	tf := newTestFetcher(t, Config{WaitTime: 20 * time.Second, VisibilityTimeout: 30 * time.Second}, 10, api)
	r := tf.run(t)

	for _, m := range receiveN(t, tf.out, 3) {
		if !tf.leases.has(m) {
			t.Errorf("%s was sent before its lease was registered", m.ID)
		}
		if m.QueueURL != queueURL || m.ReceiveCount != 2 || m.ReceivedAt.IsZero() || m.FirstReceivedAt.IsZero() {
			t.Errorf("message = %+v; want queue url, receive count 2 and receive times set", m)
		}
	}
	testkit.Eventually(t, 10*time.Second, "the room to hold the 3 leases", func() bool { return tf.leases.inUse() == 3 })
	if err := r.stop(); err != nil {
		t.Errorf("Run = %v; want nil", err)
	}
	checkClosedEmpty(t, tf.out)

	mu.Lock()
	defer mu.Unlock()
	if len(inputs) != 1 {
		t.Fatalf("%d receives; want 1", len(inputs))
	}
	in := inputs[0]
	if aws.ToString(in.QueueUrl) != queueURL || in.MaxNumberOfMessages != 10 || in.WaitTimeSeconds != 20 || in.VisibilityTimeout != 30 {
		t.Errorf("input = url %s, max %d, wait %d, visibility %d; want %s, 10, 20, 30",
			aws.ToString(in.QueueUrl), in.MaxNumberOfMessages, in.WaitTimeSeconds, in.VisibilityTimeout, queueURL)
	}
	if got := api.attempts.Load(); got != 1 {
		t.Errorf("receive asked the SDK for %d attempts; want 1 (a retried poll orphans what the failed one was handed)", got)
	}
	if got := testkit.Value(tf.metrics.MessagesReceived); got != 3 {
		t.Errorf("messages received = %v; want 3", got)
	}
	if got := tf.health.n.Load(); got != 1 {
		t.Errorf("ReceiveSucceeded called %d times; want 1", got)
	}
}

func TestFetcherAsksOnlyForRoom(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	api := &fakeAPI{ReceiveMessageFunc: func(_ context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		asked.Store(in.MaxNumberOfMessages)
		return &sqs.ReceiveMessageOutput{Messages: sqsMessages("m", int(in.MaxNumberOfMessages))}, nil
	}}
	tf := newTestFetcher(t, Config{Fetchers: 3, WaitTime: time.Second}, 4, api)
	r := tf.run(t)
	receiveN(t, tf.out, 4)
	if got := asked.Load(); got != 4 {
		t.Errorf("MaxNumberOfMessages = %d; want 4 (the limit)", got)
	}
	if got := api.calls.Load(); got != 1 {
		t.Errorf("%d receives with the limit full; want 1", got)
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
	checkClosedEmpty(t, tf.out)
}

func TestFetcherQueueMissing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{name: "QueueDoesNotExist", err: &types.QueueDoesNotExist{}},
		{name: "legacy code", err: &smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue", Fault: smithy.FaultClient}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{ReceiveMessageFunc: func(context.Context, *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
				return nil, tt.err
			}}
			tf := newTestFetcher(t, Config{Fetchers: 2}, 20, api)
			r := tf.run(t)
			err := r.wait() // no cancel: Run stops by itself
			if !errors.Is(err, ErrQueueMissing) {
				t.Fatalf("Run = %v; want an error wrapping ErrQueueMissing", err)
			}
			if !strings.Contains(err.Error(), queueURL) {
				t.Errorf("Run = %q; want it to name the queue", err)
			}
			checkClosedEmpty(t, tf.out)
			if got := tf.leases.inUse(); got != 0 {
				t.Errorf("limiter InUse = %d after failed receives; want 0", got)
			}
		})
	}
}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}

func TestFetcherBacksOffAndRecovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{name: "throttled", err: &smithy.GenericAPIError{Code: "RequestThrottled", Fault: smithy.FaultServer}},
		{name: "server error", err: &smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}},
		{name: "network timeout", err: timeoutError{}},
		{name: "access denied", err: &smithy.GenericAPIError{Code: "AccessDenied", Fault: smithy.FaultClient}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const failures = 3
			api := &fakeAPI{}
			api.ReceiveMessageFunc = func(context.Context, *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
				if api.calls.Load() <= failures {
					return nil, tt.err
				}
				return &sqs.ReceiveMessageOutput{Messages: sqsMessages("m", 2)}, nil
			}
			tf := newTestFetcher(t, Config{WaitTime: time.Second}, 10, api)
			r := tf.run(t)
			got := receiveN(t, tf.out, 2)
			for _, m := range got {
				if !tf.leases.has(m) {
					t.Errorf("%s not registered", m.ID)
				}
			}
			// Failed receives give their room back: only the two leases
			// hold room.
			testkit.Eventually(t, 10*time.Second, "the room to hold just the 2 leases", func() bool { return tf.leases.inUse() == 2 })
			if err := r.stop(); err != nil {
				t.Errorf("Run = %v; want nil", err)
			}
			if got := api.calls.Load(); got != failures+1 {
				t.Errorf("%d receives; want %d", got, failures+1)
			}
			if got := tf.health.n.Load(); got != 1 {
				t.Errorf("ReceiveSucceeded called %d times; want 1 (not for failures)", got)
			}
			checkClosedEmpty(t, tf.out)
		})
	}
}

// TestFetcherAdaptsPolls: unpinned, the number of polls grows by one per
// full receive up to MaxFetchers, and falls back to one, never zero, once
// receives come back empty.
func TestFetcherAdaptsPolls(t *testing.T) {
	t.Parallel()
	var full atomic.Bool
	full.Store(true)
	var inFlight, most atomic.Int32
	api := &fakeAPI{ReceiveMessageFunc: func(_ context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if full.Load() {
			return &sqs.ReceiveMessageOutput{Messages: sqsMessages("m", int(in.MaxNumberOfMessages))}, nil
		}
		return &sqs.ReceiveMessageOutput{}, nil // a long poll that finds nothing
	}}
	tf := newTestFetcher(t, Config{Fetchers: 0, MaxFetchers: 4, WaitTime: time.Second}, 1000, api)
	tf.run(t)
	go func() { // the pool's side: take what arrives, give its room back
		for range tf.out {
			tf.leases.Unreserve(1)
		}
	}()
	testkit.Eventually(t, 10*time.Second, "four polls", func() bool { return testkit.Value(tf.metrics.ReceivePolls) == 4 })
	full.Store(false)
	testkit.Eventually(t, 10*time.Second, "one poll left", func() bool { return testkit.Value(tf.metrics.ReceivePolls) == 1 })
	if got := most.Load(); got > 4 {
		t.Errorf("%d receives at once; want at most MaxFetchers (4)", got)
	}
	testkit.Eventually(t, 10*time.Second, "more empty receives", func() bool { return testkit.Value(tf.metrics.ReceiveEmpty) >= 20 })
	if got := testkit.Value(tf.metrics.ReceivePolls); got != 1 {
		t.Errorf("%v polls while idle; want 1", got)
	}
}
