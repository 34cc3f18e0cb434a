package ack

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
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
