package fetch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
)

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
