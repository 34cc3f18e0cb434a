package visibility

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
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

const queueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"

// t0 is the fake clock's start.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeAPI is a visibility.API whose ChangeMessageVisibilityBatch is
// ChangeFunc (all entries succeed when it is nil); it keeps a copy of every
// request's entries.
type fakeAPI struct {
	API
	ChangeFunc func(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error)

	mu    sync.Mutex
	calls [][]types.ChangeMessageVisibilityBatchRequestEntry
}

func (f *fakeAPI) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	f.mu.Lock()
	f.calls = append(f.calls, slices.Clone(in.Entries))
	f.mu.Unlock()
	if f.ChangeFunc == nil {
		return succeedAll(in), nil
	}
	return f.ChangeFunc(ctx, in)
}

func (f *fakeAPI) requests() [][]types.ChangeMessageVisibilityBatchRequestEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// entries is every entry sent, by receipt handle.
func (f *fakeAPI) entries() map[string][]types.ChangeMessageVisibilityBatchRequestEntry {
	out := map[string][]types.ChangeMessageVisibilityBatchRequestEntry{}
	for _, req := range f.requests() {
		for _, e := range req {
			out[aws.ToString(e.ReceiptHandle)] = append(out[aws.ToString(e.ReceiptHandle)], e)
		}
	}
	return out
}

func succeedAll(in *sqs.ChangeMessageVisibilityBatchInput) *sqs.ChangeMessageVisibilityBatchOutput {
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
	}
	return out
}

type testTable struct {
	*Table
	api     *fakeAPI
	metrics *metrics.Metrics
	clock   *testkit.Clock
}

// roomReturned is how many units of room leases gave back: the tests add
// leases without reserving, so the room in use goes below zero by that.
func (tm *testTable) roomReturned() int64 { return int64(-tm.Reserved()) }

func newTestTable(t *testing.T, cfg Config, api *fakeAPI) *testTable {
	t.Helper()
	tm := &testTable{api: api, metrics: metrics.New(), clock: testkit.NewClock(t0)}
	cfg.QueueURL = queueURL
	if cfg.VisibilityTimeout == 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = tm.clock.Now
	}
	if cfg.InFlightLimit == 0 {
		cfg.InFlightLimit = 1 << 20
	}
	tm.Table = New(cfg, api, zap.NewNop(), tm.metrics)
	// The sender of visibility changes runs; the heartbeat does not: the
	// tests run its rounds themselves, on the fake clock.
	if err := tm.changes.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tm.changes.Stop(context.Background()) })
	return tm
}

// received returns n messages received at at (first received then too).
func received(prefix string, n int, at time.Time) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = &message.Message{
			ID: fmt.Sprintf("%s-%d", prefix, i), ReceiptHandle: fmt.Sprintf("%s-handle-%d", prefix, i),
			QueueURL: queueURL, ReceivedAt: at, FirstReceivedAt: at, ReceiveCount: 1,
		}
	}
	return msgs
}

func checkBatches(t *testing.T, reqs [][]types.ChangeMessageVisibilityBatchRequestEntry) {
	t.Helper()
	for i, req := range reqs {
		if len(req) == 0 || len(req) > 10 {
			t.Errorf("request %d has %d entries; want 1..10", i, len(req))
		}
		ids := map[string]bool{}
		for _, e := range req {
			if ids[aws.ToString(e.Id)] {
				t.Errorf("request %d has entry id %q twice", i, aws.ToString(e.Id))
			}
			ids[aws.ToString(e.Id)] = true
		}
	}
}

func TestAddSameIDTwice(t *testing.T) {
	t.Parallel()
	m := newTestTable(t, Config{}, &fakeAPI{})
	old := &message.Message{ID: "dup", ReceiptHandle: "old", ReceivedAt: t0, FirstReceivedAt: t0}
	redelivered := &message.Message{ID: "dup", ReceiptHandle: "new", ReceivedAt: t0.Add(time.Second), FirstReceivedAt: t0}
	m.Add(old)
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	if !m.Begin(old, cancel) {
		t.Fatal("Start(old) = false")
	}

	m.Add(redelivered)

	if m.Alive(old) {
		t.Error("old lease still alive after the redelivery")
	}
	if !errors.Is(context.Cause(ctx), ErrLeaseLost) {
		t.Errorf("old handler's cause = %v; want ErrLeaseLost", context.Cause(ctx))
	}
	if !m.Alive(redelivered) {
		t.Error("new lease not alive")
	}
	if m.Begin(old, func(error) {}) {
		t.Error("Start(old) = true after the redelivery")
	}
	if got := testkit.Value(m.metrics.LeasesLost); got != 1 {
		t.Errorf("leases lost = %v; want 1", got)
	}
	// The old lease's room is given back: one lease is held for two adds.
	if got := m.roomReturned(); got != 1 {
		t.Errorf("room returned %d times; want 1", got)
	}

	m.Remove(old) // the old handler finishing must not drop the new lease
	if !m.Alive(redelivered) || m.Len() != 1 {
		t.Errorf("after Remove(old): Alive(new) = %v, Len = %d; want true, 1", m.Alive(redelivered), m.Len())
	}
	if got := m.roomReturned(); got != 1 {
		t.Errorf("room returned %d times after Remove(old); want 1", got)
	}

	m.Remove(redelivered)
	m.Remove(redelivered)
	if m.Len() != 0 {
		t.Errorf("Len() = %d; want 0", m.Len())
	}
	if got := m.roomReturned(); got != 2 {
		t.Errorf("room returned %d times; want 2", got)
	}
}

// TestHandledFreesRoomOnce: Handled gives the fetcher its room back while
// the lease stays alive for its delete; Remove later does not give it twice.
func TestHandledFreesRoomOnce(t *testing.T) {
	t.Parallel()
	m := newTestTable(t, Config{}, &fakeAPI{})
	msgs := received("m", 2, t0)
	m.Add(msgs...)
	m.Handled(msgs[0])
	m.Handled(msgs[0])
	if got := m.roomReturned(); got != 1 {
		t.Errorf("room returned %d times after Handled twice; want 1", got)
	}
	if !m.Alive(msgs[0]) || m.Len() != 2 {
		t.Errorf("after Handled: Alive = %v, Len = %d; want true, 2 (the lease waits for its delete)", m.Alive(msgs[0]), m.Len())
	}
	m.Remove(msgs[0])
	m.Remove(msgs[1])
	m.Handled(msgs[1]) // after Remove: harmless
	if got := m.roomReturned(); got != 2 {
		t.Errorf("room returned %d times; want 2", got)
	}
	// A redelivery replacing a handled lease does not free its room again.
	again := received("m", 1, t0.Add(time.Second))
	m.Add(again...)
	m.Handled(again[0])
	redelivered := received("m", 1, t0.Add(2*time.Second))
	m.Add(redelivered...)
	if got := m.roomReturned(); got != 3 {
		t.Errorf("room returned %d times after a redelivery of a handled lease; want 3", got)
	}
}

func TestStartUnknownLease(t *testing.T) {
	t.Parallel()
	m := newTestTable(t, Config{}, &fakeAPI{})
	msg := received("m", 1, t0)[0]
	if m.Begin(msg, func(error) {}) {
		t.Error("Start on a message never added = true")
	}
	if m.Alive(msg) {
		t.Error("Alive on a message never added = true")
	}
	m.Remove(msg) // harmless
	if got := m.roomReturned(); got != 0 {
		t.Errorf("room returned %d times; want 0", got)
	}
}

func TestHeartbeatConcurrentWithTableChanges(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{}
	m := newTestTable(t, Config{MaxConcurrentBatches: 4}, api)
	msgs := received("m", 200, t0.Add(-15*time.Second))
	m.Add(msgs...)
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, msg := range msgs[:100] {
			m.Remove(msg)
		}
	})
	wg.Go(func() { m.Heartbeat(t.Context()) })
	wg.Go(func() { m.Release(t.Context(), msgs[100:150]) })
	wg.Wait()
	if got := m.Len(); got != 50 {
		t.Errorf("Len() = %d; want 50", got)
	}
	if got := m.roomReturned(); got != 150 {
		t.Errorf("room returned %d times; want 150", got)
	}
	for _, msg := range msgs[150:] {
		if !m.Alive(msg) {
			t.Errorf("%s not alive", msg.ID)
		}
	}
}

func TestStartHeartbeatsUntilStop(t *testing.T) {
	t.Parallel()
	called := make(chan struct{})
	var once sync.Once
	api := &fakeAPI{ChangeFunc: func(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
		once.Do(func() { close(called) })
		return succeedAll(in), nil
	}}
	// A 30ms visibility timeout ticks every 10ms; on the fake clock the
	// lease has 15ms left, so the first round extends it.
	clock := testkit.NewClock(t0)
	m := New(Config{QueueURL: queueURL, VisibilityTimeout: 30 * time.Millisecond, Now: clock.Now}, api, zap.NewNop(), metrics.New())
	m.Add(received("m", 1, t0.Add(-15*time.Millisecond))...)

	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := m.Start(t.Context()); err == nil {
		t.Error("second Start = nil; want an error")
	}
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("the heartbeat sent nothing")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 2 { // stopping twice is harmless
		if err := m.Stop(ctx); err != nil {
			t.Errorf("Stop #%d = %v; want nil", i+1, err)
		}
	}
}

func TestStopBeforeStartIsHarmless(t *testing.T) {
	t.Parallel()
	m := New(Config{QueueURL: queueURL, VisibilityTimeout: 30 * time.Second}, &fakeAPI{}, zap.NewNop(), metrics.New())
	for i := range 2 {
		if err := m.Stop(t.Context()); err != nil {
			t.Errorf("Stop #%d before Start = %v; want nil", i+1, err)
		}
	}
	if err := m.Start(t.Context()); err == nil {
		t.Error("Start after Stop = nil; want an error")
	}
}

func TestAliveEndsAtDeadline(t *testing.T) {
	t.Parallel()
	m := newTestTable(t, Config{MaxProcessingTime: 40 * time.Second}, &fakeAPI{})
	msg := received("m", 1, t0.Add(-15*time.Second))[0]
	m.Add(msg)
	m.Heartbeat(t.Context()) // extends to the hard limit: t0+25s
	if !m.Alive(msg) {
		t.Fatal("lease not alive right after its extension")
	}
	m.clock.Set(t0.Add(26 * time.Second)) // past the deadline, before the next round
	if m.Alive(msg) {
		t.Error("Alive = true one second after the lease ran out; want false")
	}
}
