package fetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

const queueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"

// fakeAPI is a fetch.API whose ReceiveMessage is ReceiveMessageFunc.
type fakeAPI struct {
	API
	ReceiveMessageFunc func(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error)
	calls              atomic.Int64
	attempts           atomic.Int32 // RetryMaxAttempts the last call asked for
}

func (f *fakeAPI) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.calls.Add(1)
	o := sqs.Options{RetryMaxAttempts: 3}
	for _, opt := range opts {
		opt(&o)
	}
	f.attempts.Store(int32(o.RetryMaxAttempts))
	return f.ReceiveMessageFunc(ctx, in)
}

// fakeLeases records what is added and released, and keeps the room for
// in-flight messages as the lease table does: a semaphore of limit units.
type fakeLeases struct {
	roomMu sync.Mutex
	limit  int
	used   int
	freed  chan struct{} // closed and replaced whenever room is given back

	mu       sync.Mutex
	added    map[*message.Message]bool
	released []*message.Message
	// releaseCtxErr is the error of the context Release was given.
	releaseCtxErr error
}

func newFakeLeases(limit int) *fakeLeases {
	return &fakeLeases{added: map[*message.Message]bool{}, limit: limit, freed: make(chan struct{})}
}

// Reserve takes want units at once, or waits until it can.
func (l *fakeLeases) Reserve(ctx context.Context, want int) (int, error) {
	want = min(want, l.limit)
	for {
		l.roomMu.Lock()
		if l.limit-l.used >= want {
			l.used += want
			l.roomMu.Unlock()
			return want, nil
		}
		freed := l.freed
		l.roomMu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (l *fakeLeases) Unreserve(n int) {
	l.roomMu.Lock()
	defer l.roomMu.Unlock()
	l.used -= n
	close(l.freed)
	l.freed = make(chan struct{})
}

// inUse is the room taken.
func (l *fakeLeases) inUse() int {
	l.roomMu.Lock()
	defer l.roomMu.Unlock()
	return l.used
}

func (l *fakeLeases) Add(msgs ...*message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		l.added[m] = true
	}
}

func (l *fakeLeases) Release(ctx context.Context, msgs []*message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.released = append(l.released, msgs...)
	l.releaseCtxErr = ctx.Err()
}

func (l *fakeLeases) has(m *message.Message) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.added[m]
}

func (l *fakeLeases) releasedMessages() []*message.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*message.Message(nil), l.released...)
}

type fakeHealth struct{ n atomic.Int64 }

func (h *fakeHealth) ReceiveSucceeded() { h.n.Add(1) }

type testFetcher struct {
	*Fetcher
	leases  *fakeLeases
	health  *fakeHealth
	metrics *metrics.Metrics
	out     chan *message.Message
}

func newTestFetcher(t *testing.T, cfg Config, limit int, api API) *testFetcher {
	t.Helper()
	cfg.QueueURL = queueURL
	if cfg.Fetchers == 0 && cfg.MaxFetchers == 0 { // pinned to one, unless the test adapts
		cfg.Fetchers = 1
	}
	if cfg.ErrorBackoffMin == 0 {
		cfg.ErrorBackoffMin, cfg.ErrorBackoffMax = time.Millisecond, 4*time.Millisecond
	}
	tf := &testFetcher{
		leases: newFakeLeases(limit), health: &fakeHealth{},
		metrics: metrics.New(), out: make(chan *message.Message, limit),
	}
	tf.Fetcher = New(cfg, api, tf.leases, tf.health, tf.out, zap.NewNop(), tf.metrics)
	return tf
}

// runner is a started Fetcher.
type runner struct {
	tf      *testFetcher
	cancel  context.CancelFunc // cancels the context of a Stop begun by stopAsync
	stopped chan error
}

// run starts the fetcher; the test's cleanup stops it.
func (tf *testFetcher) run(t *testing.T) *runner {
	t.Helper()
	if err := tf.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	r := &runner{tf: tf}
	t.Cleanup(func() {
		// A queue found missing, or a Stop the test cut short, ended it.
		if err := r.stop(); err != nil && !errors.Is(err, ErrQueueMissing) && !errors.Is(err, context.Canceled) {
			t.Errorf("Stop: %v", err)
		}
	})
	return r
}

// stop stops the fetcher (or waits for the Stop stopAsync began) and
// returns why it stopped.
func (r *runner) stop() error {
	if r.stopped == nil {
		r.stopAsync()
	}
	return r.wait()
}

// stopAsync begins a Stop without waiting for it; cancel cuts it short.
func (r *runner) stopAsync() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.stopped = make(chan error, 1)
	go func() { r.stopped <- r.tf.Stop(ctx) }()
	for !r.tf.Stopping() {
		runtime.Gosched()
	}
}

// wait waits, for ten seconds at most, for the Stop begun by stopAsync
// or, without one, for the fetchers to stop on their own; it returns the
// Stop's error, else Err.
func (r *runner) wait() error {
	timeout := time.After(10 * time.Second)
	if r.stopped == nil {
		select {
		case <-r.tf.Failed():
			return r.tf.Err()
		case <-timeout:
			return errors.New("the fetchers did not stop within 10s")
		}
	}
	select {
	case err := <-r.stopped:
		r.stopped <- err // a later wait sees it too
		if err != nil {
			return err
		}
		return r.tf.Err()
	case <-timeout:
		return errors.New("Stop did not return within 10s")
	}
}

// returned reports whether the fetchers have stopped.
func (r *runner) returned() bool {
	select {
	case <-r.tf.Failed():
		return true
	default:
		return false
	}
}

func sqsMessages(prefix string, n int) []types.Message {
	msgs := make([]types.Message, n)
	for i := range msgs {
		msgs[i] = types.Message{
			MessageId:     aws.String(fmt.Sprintf("%s-%d", prefix, i)),
			ReceiptHandle: aws.String(fmt.Sprintf("%s-handle-%d", prefix, i)),
			Body:          aws.String("body"),
			Attributes:    map[string]string{"ApproximateReceiveCount": "2"},
		}
	}
	return msgs
}

func receiveN(t *testing.T, out <-chan *message.Message, n int) []*message.Message {
	t.Helper()
	var got []*message.Message
	for range n {
		select {
		case m, ok := <-out:
			if !ok {
				t.Fatalf("out closed after %d messages; want %d", len(got), n)
			}
			got = append(got, m)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d messages; want %d", len(got), n)
		}
	}
	return got
}

func checkClosedEmpty(t *testing.T, out <-chan *message.Message) {
	t.Helper()
	select {
	case m, ok := <-out:
		if ok {
			t.Errorf("unexpected message %s on out", m.ID)
		}
	default:
		t.Error("out not closed after the fetchers stopped")
	}
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
