package ack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

const queueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"

// fakeAPI is an ack.API whose DeleteMessageBatch is DeleteMessageBatchFunc;
// it keeps a copy of every request's entries.
type fakeAPI struct {
	API
	DeleteMessageBatchFunc func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error)

	mu    sync.Mutex
	calls [][]types.DeleteMessageBatchRequestEntry
}

func (f *fakeAPI) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.mu.Lock()
	f.calls = append(f.calls, slices.Clone(in.Entries))
	f.mu.Unlock()
	return f.DeleteMessageBatchFunc(ctx, in)
}

func (f *fakeAPI) requests() [][]types.DeleteMessageBatchRequestEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// sent counts how many times each receipt handle was sent.
func (f *fakeAPI) sent() map[string]int {
	n := map[string]int{}
	for _, req := range f.requests() {
		for _, e := range req {
			n[aws.ToString(e.ReceiptHandle)]++
		}
	}
	return n
}

func succeedAll(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

// fakeLeases is the lease table: a message is alive until it is removed or
// killed.
type fakeLeases struct {
	mu      sync.Mutex
	alive   map[*message.Message]bool
	removed map[*message.Message]int
}

func newFakeLeases() *fakeLeases {
	return &fakeLeases{alive: map[*message.Message]bool{}, removed: map[*message.Message]int{}}
}

func (l *fakeLeases) add(msgs ...*message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		l.alive[m] = true
	}
}

func (l *fakeLeases) kill(m *message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alive[m] = false
}

func (l *fakeLeases) Alive(m *message.Message) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.alive[m]
}

func (l *fakeLeases) Remove(m *message.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alive[m] = false
	l.removed[m]++
}

func (l *fakeLeases) removedCount(m *message.Message) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.removed[m]
}

func newMessages(n int, leases *fakeLeases) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = &message.Message{ID: fmt.Sprintf("id-%d", i), ReceiptHandle: fmt.Sprintf("handle-%d", i), QueueURL: queueURL}
	}
	leases.add(msgs...)
	return msgs
}

func newTestDeleter(t *testing.T, cfg Config, api API, leases Leases) (*Deleter, *metrics.Metrics) {
	t.Helper()
	cfg.QueueURL = queueURL
	m := metrics.New()
	d := New(cfg, api, leases, zap.NewNop(), m)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return d, m
}

func stop(t *testing.T, d *Deleter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func deleteAll(t *testing.T, d *Deleter, msgs []*message.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := d.Delete(t.Context(), m); err != nil {
			t.Fatalf("Delete(%s): %v", m.ID, err)
		}
	}
}

func (d *Deleter) backlog() int {
	n, _ := d.sender.Backlog()
	return n
}

func (d *Deleter) gated() bool {
	_, blocking := d.sender.Backlog()
	return blocking
}

// checkRequests fails if a request has more than ten entries, or an entry
// id or receipt handle twice.
func checkRequests(t *testing.T, reqs [][]types.DeleteMessageBatchRequestEntry) {
	t.Helper()
	for i, req := range reqs {
		if len(req) == 0 || len(req) > 10 {
			t.Errorf("request %d has %d entries; want 1..10", i, len(req))
		}
		ids, handles := map[string]bool{}, map[string]bool{}
		for _, e := range req {
			id, h := aws.ToString(e.Id), aws.ToString(e.ReceiptHandle)
			if ids[id] {
				t.Errorf("request %d has entry id %q twice", i, id)
			}
			if handles[h] {
				t.Errorf("request %d has receipt handle %q twice", i, h)
			}
			ids[id], handles[h] = true, true
		}
	}
}

func checkRemovedOnce(t *testing.T, leases *fakeLeases, msgs []*message.Message) {
	t.Helper()
	for _, m := range msgs {
		if n := leases.removedCount(m); n != 1 {
			t.Errorf("lease of %s removed %d times; want exactly once", m.ID, n)
		}
	}
}

func TestDeleteBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		n         int
		wantSizes []int
	}{
		{name: "one", n: 1, wantSizes: []int{1}},
		{name: "exactly ten", n: 10, wantSizes: []int{10}},
		{name: "eleven", n: 11, wantSizes: []int{1, 10}},
		{name: "twenty-five", n: 25, wantSizes: []int{5, 10, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{DeleteMessageBatchFunc: succeedAll}
			leases := newFakeLeases()
			// A flush interval this long means only full batches and Stop
			// flush, so the batch sizes are exact.
			d, m := newTestDeleter(t, Config{FlushInterval: time.Hour}, api, leases)
			d.Start(t.Context())
			msgs := newMessages(tt.n, leases)
			deleteAll(t, d, msgs)
			stop(t, d)

			reqs := api.requests()
			var sizes []int
			for _, r := range reqs {
				sizes = append(sizes, len(r))
			}
			slices.Sort(sizes)
			if !slices.Equal(sizes, tt.wantSizes) {
				t.Errorf("batch sizes = %v; want %v", sizes, tt.wantSizes)
			}
			checkRequests(t, reqs)
			for h, n := range api.sent() {
				if n != 1 {
					t.Errorf("handle %s sent %d times; want once", h, n)
				}
			}
			checkRemovedOnce(t, leases, msgs)
			if got := testkit.Value(m.MessagesDeleted); got != float64(tt.n) {
				t.Errorf("messages deleted = %v; want %d", got, tt.n)
			}
			if got := testkit.Value(m.DeleteFailures); got != 0 {
				t.Errorf("delete failures = %v; want 0", got)
			}
			if b := d.backlog(); b != 0 {
				t.Errorf("backlog after Stop = %d; want 0", b)
			}
		})
	}
}

// entryOutcome says what the fake answers for one entry.
type entryOutcome int

const (
	entryOK entryOutcome = iota
	entryFail
	entryOmit // not mentioned in the response at all
)

func TestDeletePartialFailure(t *testing.T) {
	t.Parallel()
	const n = 25
	internalError := types.BatchResultErrorEntry{Code: aws.String("InternalError"), SenderFault: false, Message: aws.String("try again")}
	invalid := types.BatchResultErrorEntry{Code: aws.String(sqsapi.CodeReceiptHandleIsInvalid), SenderFault: true}
	tests := []struct {
		name string
		// outcome decides the answer for message i on its attempt-th send.
		outcome func(i, attempt int) (entryOutcome, types.BatchResultErrorEntry)
		// wantSends is how often message i is sent.
		wantSends   func(i int) int
		wantDeleted int
		wantFailed  map[string]int
	}{
		{
			name: "transient entry failures are retried",
			outcome: func(i, attempt int) (entryOutcome, types.BatchResultErrorEntry) {
				if i%3 == 0 && attempt == 1 {
					return entryFail, internalError
				}
				return entryOK, types.BatchResultErrorEntry{}
			},
			wantSends: func(i int) int {
				if i%3 == 0 {
					return 2
				}
				return 1
			},
			wantDeleted: n,
		},
		{
			name: "transient entry failures are retried until they succeed",
			outcome: func(i, attempt int) (entryOutcome, types.BatchResultErrorEntry) {
				if i%5 == 0 && attempt <= 3 {
					return entryFail, internalError
				}
				return entryOK, types.BatchResultErrorEntry{}
			},
			wantSends: func(i int) int {
				if i%5 == 0 {
					return 4
				}
				return 1
			},
			wantDeleted: n,
		},
		{
			name: "invalid receipt handles are counted and not retried",
			outcome: func(i, _ int) (entryOutcome, types.BatchResultErrorEntry) {
				if i%4 == 0 {
					return entryFail, invalid
				}
				return entryOK, types.BatchResultErrorEntry{}
			},
			wantSends:   func(int) int { return 1 },
			wantDeleted: n - 7,
			wantFailed:  map[string]int{sqsapi.CodeReceiptHandleIsInvalid: 7},
		},
		{
			name: "handle gone is final even when not the sender's fault",
			outcome: func(i, _ int) (entryOutcome, types.BatchResultErrorEntry) {
				if i == 7 {
					return entryFail, types.BatchResultErrorEntry{Code: aws.String(sqsapi.CodeMessageNotInflight)}
				}
				return entryOK, types.BatchResultErrorEntry{}
			},
			wantSends:   func(int) int { return 1 },
			wantDeleted: n - 1,
			wantFailed:  map[string]int{sqsapi.CodeMessageNotInflight: 1},
		},
		{
			name: "mixed transient and invalid",
			outcome: func(i, attempt int) (entryOutcome, types.BatchResultErrorEntry) {
				switch {
				case i%4 == 1:
					return entryFail, invalid
				case i%4 == 2 && attempt == 1:
					return entryFail, internalError
				}
				return entryOK, types.BatchResultErrorEntry{}
			},
			wantSends: func(i int) int {
				if i%4 == 2 {
					return 2
				}
				return 1
			},
			wantDeleted: n - 6,
			wantFailed:  map[string]int{sqsapi.CodeReceiptHandleIsInvalid: 6},
		},
		{
			name: "entries missing from the response are retried",
			outcome: func(i, attempt int) (entryOutcome, types.BatchResultErrorEntry) {
				if i%2 == 0 && attempt == 1 {
					return entryOmit, types.BatchResultErrorEntry{}
				}
				return entryOK, types.BatchResultErrorEntry{}
			},
			wantSends: func(i int) int {
				if i%2 == 0 {
					return 2
				}
				return 1
			},
			wantDeleted: n,
		},
		{
			name: "a failure without a code is counted as unknown",
			outcome: func(i, _ int) (entryOutcome, types.BatchResultErrorEntry) {
				if i == 3 {
					return entryFail, types.BatchResultErrorEntry{SenderFault: true}
				}
				return entryOK, types.BatchResultErrorEntry{}
			},
			wantSends:   func(int) int { return 1 },
			wantDeleted: n - 1,
			wantFailed:  map[string]int{"unknown": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			leases := newFakeLeases()
			msgs := newMessages(n, leases)
			index := map[string]int{}
			for i, m := range msgs {
				index[m.ReceiptHandle] = i
			}
			var mu sync.Mutex
			attempts := map[string]int{}
			api := &fakeAPI{DeleteMessageBatchFunc: func(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
				mu.Lock()
				defer mu.Unlock()
				out := &sqs.DeleteMessageBatchOutput{}
				for _, e := range in.Entries {
					h := aws.ToString(e.ReceiptHandle)
					attempts[h]++
					switch o, fail := tt.outcome(index[h], attempts[h]); o {
					case entryOK:
						out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
					case entryFail:
						fail.Id = e.Id
						out.Failed = append(out.Failed, fail)
					case entryOmit:
					}
				}
				return out, nil
			}}
			d, m := newTestDeleter(t, Config{}, api, leases)
			d.Start(t.Context())
			deleteAll(t, d, msgs)
			stop(t, d)

			checkRequests(t, api.requests())
			sent := api.sent()
			for i, msg := range msgs {
				if got, want := sent[msg.ReceiptHandle], tt.wantSends(i); got != want {
					t.Errorf("message %d sent %d times; want %d", i, got, want)
				}
			}
			checkRemovedOnce(t, leases, msgs)
			if got := testkit.Value(m.MessagesDeleted); got != float64(tt.wantDeleted) {
				t.Errorf("messages deleted = %v; want %d", got, tt.wantDeleted)
			}
			wantTotal := 0
			for code, want := range tt.wantFailed {
				wantTotal += want
				if got := testkit.Value(m.DeleteFailures.WithLabelValues(code)); got != float64(want) {
					t.Errorf("delete failures{code=%q} = %v; want %d", code, got, want)
				}
			}
			if got := testkit.Value(m.DeleteFailures); got != float64(wantTotal) {
				t.Errorf("delete failures (all codes) = %v; want %d", got, wantTotal)
			}
			if b := d.backlog(); b != 0 {
				t.Errorf("backlog after Stop = %d; want 0", b)
			}
		})
	}
}

func TestDeleteRetriesFailedCalls(t *testing.T) {
	t.Parallel()
	throttled := &smithy.GenericAPIError{Code: "RequestThrottled", Message: "slow down", Fault: smithy.FaultServer}
	tests := []struct {
		name string
		// fail is the answer of a call that fails.
		fail func(ctx context.Context) error
	}{
		{name: "throttled", fail: func(context.Context) error { return throttled }},
		{name: "server error", fail: func(context.Context) error {
			return &smithy.GenericAPIError{Code: "InternalFailure", Fault: smithy.FaultServer}
		}},
		{name: "timeout", fail: func(ctx context.Context) error {
			<-ctx.Done() // hang until the request timeout
			return ctx.Err()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const n, failures = 25, 3
			var mu sync.Mutex
			calls := 0
			api := &fakeAPI{DeleteMessageBatchFunc: func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
				mu.Lock()
				calls++
				fail := calls <= failures
				mu.Unlock()
				if fail {
					return nil, tt.fail(ctx)
				}
				return succeedAll(ctx, in)
			}}
			leases := newFakeLeases()
			msgs := newMessages(n, leases)
			d, m := newTestDeleter(t, Config{RequestTimeout: 20 * time.Millisecond}, api, leases)
			d.Start(t.Context())
			deleteAll(t, d, msgs)
			stop(t, d)

			reqs := api.requests()
			if len(reqs) < failures+3 {
				t.Errorf("%d calls; want at least %d (3 failed, then 3 batches)", len(reqs), failures+3)
			}
			checkRequests(t, reqs)
			checkRemovedOnce(t, leases, msgs)
			if got := testkit.Value(m.MessagesDeleted); got != n {
				t.Errorf("messages deleted = %v; want %d", got, n)
			}
			if got := testkit.Value(m.DeleteFailures); got != 0 {
				t.Errorf("delete failures = %v; want 0", got)
			}
		})
	}
}

func TestDeleteSkipsDeadLeases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// killFirst kills the victim's lease before Delete; otherwise it is
		// killed during the first (throttled) call.
		killFirst bool
		wantSends int
	}{
		{name: "dead before delete", killFirst: true, wantSends: 0},
		{name: "lost while a throttled call was out", wantSends: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			leases := newFakeLeases()
			msgs := newMessages(5, leases)
			victim := msgs[2]
			var once sync.Once
			api := &fakeAPI{DeleteMessageBatchFunc: func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
				if tt.killFirst {
					return succeedAll(ctx, in)
				}
				first := false
				once.Do(func() { first = true })
				if first {
					leases.kill(victim)
					return nil, &smithy.GenericAPIError{Code: "RequestThrottled", Fault: smithy.FaultServer}
				}
				return succeedAll(ctx, in)
			}}
			if tt.killFirst {
				leases.kill(victim)
			}
			d, m := newTestDeleter(t, Config{FlushInterval: time.Hour}, api, leases)
			d.Start(t.Context())
			deleteAll(t, d, msgs)
			stop(t, d)

			if got := api.sent()[victim.ReceiptHandle]; got != tt.wantSends {
				t.Errorf("dead lease's handle sent %d times; want %d", got, tt.wantSends)
			}
			checkRemovedOnce(t, leases, msgs)
			if got := testkit.Value(m.MessagesDeleted); got != 4 {
				t.Errorf("messages deleted = %v; want 4", got)
			}
			if got := testkit.Value(m.DeleteFailures.WithLabelValues("lease_lost")); got != 1 {
				t.Errorf("delete failures{lease_lost} = %v; want 1", got)
			}
			if b := d.backlog(); b != 0 {
				t.Errorf("backlog after Stop = %d; want 0", b)
			}
		})
	}
}

func TestDeleteRedeliveredMessageOnce(t *testing.T) {
	t.Parallel()
	leases := newFakeLeases()
	old := &message.Message{ID: "dup", ReceiptHandle: "old-handle"}
	other := &message.Message{ID: "other", ReceiptHandle: "other-handle"}
	redelivered := &message.Message{ID: "dup", ReceiptHandle: "new-handle"}
	leases.add(old, other, redelivered)
	api := &fakeAPI{DeleteMessageBatchFunc: succeedAll}
	d, m := newTestDeleter(t, Config{FlushInterval: time.Hour}, api, leases)
	d.Start(t.Context())
	deleteAll(t, d, []*message.Message{old, other, redelivered})
	stop(t, d)

	reqs := api.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d calls; want 1", len(reqs))
	}
	checkRequests(t, reqs)
	var handles []string
	for _, e := range reqs[0] {
		handles = append(handles, aws.ToString(e.ReceiptHandle))
	}
	slices.Sort(handles)
	if want := []string{"new-handle", "other-handle"}; !slices.Equal(handles, want) {
		t.Errorf("handles sent = %v; want %v", handles, want)
	}
	checkRemovedOnce(t, leases, []*message.Message{old, other, redelivered})
	if got := testkit.Value(m.MessagesDeleted); got != 2 {
		t.Errorf("messages deleted = %v; want 2", got)
	}
	if b := d.backlog(); b != 0 {
		t.Errorf("backlog after Stop = %d; want 0", b)
	}
}

func TestStopFlushesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{DeleteMessageBatchFunc: succeedAll}
	leases := newFakeLeases()
	msgs := newMessages(3, leases)
	d, m := newTestDeleter(t, Config{FlushInterval: time.Hour}, api, leases)
	d.Start(t.Context())
	d.Start(t.Context()) // harmless
	deleteAll(t, d, msgs)
	stop(t, d)
	if got := testkit.Value(m.MessagesDeleted); got != 3 {
		t.Errorf("messages deleted after Stop = %v; want 3", got)
	}
	checkRemovedOnce(t, leases, msgs)
	stop(t, d) // a second Stop returns at once
	if got := len(api.requests()); got != 1 {
		t.Errorf("%d calls; want 1", got)
	}
}

func TestStopBeforeStart(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{DeleteMessageBatchFunc: succeedAll}
	leases := newFakeLeases()
	msgs := newMessages(2, leases)
	d, m := newTestDeleter(t, Config{FlushInterval: time.Hour}, api, leases)
	// Deletes queued before Start are flushed by Stop.
	deleteAll(t, d, msgs)
	stop(t, d)
	stop(t, d)
	d.Start(t.Context()) // after Stop: harmless, starts nothing
	if got := testkit.Value(m.MessagesDeleted); got != 2 {
		t.Errorf("messages deleted = %v; want 2", got)
	}
	checkRemovedOnce(t, leases, msgs)
}

func TestFlushIntervalSendsPartialBatch(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{DeleteMessageBatchFunc: succeedAll}
	leases := newFakeLeases()
	msgs := newMessages(3, leases)
	d, m := newTestDeleter(t, Config{FlushInterval: time.Millisecond}, api, leases)
	d.Start(t.Context())
	deleteAll(t, d, msgs)
	testkit.Eventually(t, 10*time.Second, "the partial batch to be flushed without Stop", func() bool {
		return testkit.Value(m.MessagesDeleted) == 3
	})
	checkRemovedOnce(t, leases, msgs)
	stop(t, d)
}

func TestStopDeadlineAbandons(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	var once sync.Once
	api := &fakeAPI{DeleteMessageBatchFunc: func(ctx context.Context, _ *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		once.Do(func() { close(entered) })
		<-ctx.Done() // hang until the deleter gives up
		return nil, ctx.Err()
	}}
	leases := newFakeLeases()
	msgs := newMessages(3, leases)
	d, m := newTestDeleter(t, Config{FlushInterval: time.Millisecond, RequestTimeout: time.Hour}, api, leases)
	d.Start(t.Context())
	deleteAll(t, d, msgs)
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already expired
	if err := d.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Stop = %v; want context.Canceled", err)
	}
	checkRemovedOnce(t, leases, msgs)
	if got := testkit.Value(m.DeleteFailures.WithLabelValues("abandoned")); got != 3 {
		t.Errorf("delete failures{abandoned} = %v; want 3", got)
	}
	if got := testkit.Value(m.MessagesDeleted); got != 0 {
		t.Errorf("messages deleted = %v; want 0", got)
	}
	if b := d.backlog(); b != 0 {
		t.Errorf("backlog after Stop = %d; want 0", b)
	}
	stop(t, d) // after the loop ended, Stop returns nil at once
}

func TestDeleteBackpressure(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	api := &fakeAPI{DeleteMessageBatchFunc: func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		select {
		case <-release:
			return succeedAll(ctx, in)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	leases := newFakeLeases()
	msgs := newMessages(21, leases)
	d, m := newTestDeleter(t, Config{MaxPending: 20, FlushInterval: time.Hour, RequestTimeout: time.Hour}, api, leases)
	d.Start(t.Context())
	deleteAll(t, d, msgs[:20])
	testkit.Eventually(t, 10*time.Second, "two batches in flight", func() bool { return len(api.requests()) == 2 })
	if !d.gated() {
		t.Fatal("backlog of 20 with MaxPending 20 does not block Delete")
	}

	returned := make(chan error, 1)
	go func() { returned <- d.Delete(context.Background(), msgs[20]) }()

	// A Delete whose context ends while blocked gives up.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Delete(ctx, &message.Message{ID: "never"}); !errors.Is(err, context.Canceled) {
		t.Errorf("blocked Delete with a cancelled ctx = %v; want context.Canceled", err)
	}

	release <- struct{}{} // one batch settles: the backlog is 10, not below 10
	testkit.Eventually(t, 10*time.Second, "the first batch to settle", func() bool { return testkit.Value(m.MessagesDeleted) == 10 })
	if b := d.backlog(); b != 10 {
		t.Errorf("backlog = %d; want 10", b)
	}
	if !d.gated() {
		t.Error("Delete unblocked at a backlog of 10; want it blocked until below 10")
	}
	select {
	case err := <-returned:
		t.Fatalf("21st Delete returned (%v) at a backlog of 10", err)
	default:
	}

	release <- struct{}{} // the second settles: backlog 0
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("21st Delete: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("21st Delete still blocked after the backlog fell to 0")
	}
	close(release)
	stop(t, d)
	if got := testkit.Value(m.MessagesDeleted); got != 21 {
		t.Errorf("messages deleted = %v; want 21", got)
	}
	checkRemovedOnce(t, leases, msgs)
}

func TestDeleteBackpressureMaxPendingOne(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{DeleteMessageBatchFunc: succeedAll}
	leases := newFakeLeases()
	msgs := newMessages(2, leases)
	d, m := newTestDeleter(t, Config{MaxPending: 1, FlushInterval: time.Millisecond}, api, leases)
	d.Start(t.Context())
	if err := d.Delete(t.Context(), msgs[0]); err != nil {
		t.Fatalf("first Delete: %v", err)
	}
	testkit.Eventually(t, 10*time.Second, "the first delete to settle", func() bool { return testkit.Value(m.MessagesDeleted) == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := d.Delete(ctx, msgs[1]); err != nil {
		t.Fatalf("second Delete with an empty backlog: %v", err)
	}
	stop(t, d)
}
