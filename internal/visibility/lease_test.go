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

func TestTick(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		visibility time.Duration
		want       time.Duration
	}{
		{name: "a third of the visibility timeout", visibility: 30 * time.Second, want: 10 * time.Second},
		{name: "short", visibility: 3 * time.Second, want: time.Second},
		{name: "capped at ten seconds", visibility: 10 * time.Minute, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newTestTable(t, Config{VisibilityTimeout: tt.visibility}, &fakeAPI{})
			if got := m.Tick(); got != tt.want {
				t.Errorf("Tick() = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestHeartbeatExtendsDueLeases(t *testing.T) {
	t.Parallel()
	// Visibility 30s: the tick is 10s, so leases that run out within 20s are
	// due.
	tests := []struct {
		name      string
		due       int // received 15s ago: 15s left
		notDue    int // received 5s ago: 25s left
		wantCalls int
	}{
		{name: "25 due", due: 25, wantCalls: 3},
		{name: "exactly ten due", due: 10, wantCalls: 1},
		{name: "some due", due: 12, notDue: 7, wantCalls: 2},
		{name: "none due", notDue: 5, wantCalls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{}
			m := newTestTable(t, Config{MaxConcurrentBatches: 2}, api)
			due := received("due", tt.due, t0.Add(-15*time.Second))
			notDue := received("fresh", tt.notDue, t0.Add(-5*time.Second))
			m.Add(due...)
			m.Add(notDue...)

			m.Heartbeat(t.Context())

			reqs := api.requests()
			if len(reqs) != tt.wantCalls {
				t.Errorf("%d calls; want %d", len(reqs), tt.wantCalls)
			}
			checkBatches(t, reqs)
			sent := api.entries()
			for _, msg := range due {
				es := sent[msg.ReceiptHandle]
				if len(es) != 1 {
					t.Errorf("due %s extended %d times; want once", msg.ID, len(es))
					continue
				}
				if es[0].VisibilityTimeout != 30 {
					t.Errorf("due %s extended by %ds; want 30", msg.ID, es[0].VisibilityTimeout)
				}
			}
			for _, msg := range notDue {
				if len(sent[msg.ReceiptHandle]) != 0 {
					t.Errorf("lease %s with 25s left was extended", msg.ID)
				}
			}
			if got := testkit.Value(m.metrics.VisibilityExtensions); got != float64(tt.due) {
				t.Errorf("visibility extensions = %v; want %d", got, tt.due)
			}
			if got := testkit.Value(m.metrics.ExtensionBatches); got != float64(tt.wantCalls) {
				t.Errorf("extension batches = %v; want %d", got, tt.wantCalls)
			}

			// The extended leases run until t0+30s: a second round at the
			// same time has nothing to do.
			m.Heartbeat(t.Context())
			if got := len(api.requests()); got != tt.wantCalls {
				t.Errorf("second round sent %d more calls; want none", got-tt.wantCalls)
			}
			for _, msg := range slices.Concat(due, notDue) {
				if !m.Alive(msg) {
					t.Errorf("lease %s not alive", msg.ID)
				}
			}
			if got := testkit.Value(m.metrics.LeasesLost); got != 0 {
				t.Errorf("leases lost = %v; want 0", got)
			}
		})
	}
}

func TestHeartbeatFailures(t *testing.T) {
	t.Parallel()
	entryError := func(code string, senderFault bool) types.BatchResultErrorEntry {
		return types.BatchResultErrorEntry{Code: aws.String(code), SenderFault: senderFault}
	}
	tests := []struct {
		name string
		// fail answers the victim's entry on its attempt-th send; ok
		// means it succeeds.
		fail func(attempt int) (e types.BatchResultErrorEntry, ok bool)
		// callErr fails whole calls on attempt; nil means no call fails.
		callErr   func(attempt int) error
		wantLost  bool
		wantSends int
	}{
		{
			name: "receipt handle invalid",
			fail: func(int) (types.BatchResultErrorEntry, bool) {
				return entryError(sqsapi.CodeReceiptHandleIsInvalid, true), false
			},
			wantLost:  true,
			wantSends: 1,
		},
		{
			name: "receipt handle invalid, not marked sender fault",
			fail: func(int) (types.BatchResultErrorEntry, bool) {
				return entryError("AWS.SimpleQueueService.ReceiptHandleIsInvalid", false), false
			},
			wantLost:  true,
			wantSends: 1,
		},
		{
			name: "message not in flight",
			fail: func(int) (types.BatchResultErrorEntry, bool) {
				return entryError(sqsapi.CodeMessageNotInflight, true), false
			},
			wantLost:  true,
			wantSends: 1,
		},
		{
			name: "other sender fault: not lost, not retried",
			fail: func(int) (types.BatchResultErrorEntry, bool) {
				return entryError(sqsapi.CodeInvalidParameterValue, true), false
			},
			wantSends: 1,
		},
		{
			name: "transient entry failure is retried",
			fail: func(attempt int) (types.BatchResultErrorEntry, bool) {
				return entryError("InternalError", false), attempt > 1
			},
			wantSends: 2,
		},
		{
			name: "throttled call is retried",
			callErr: func(attempt int) error {
				if attempt <= 2 {
					return &smithy.GenericAPIError{Code: "RequestThrottled", Fault: smithy.FaultServer}
				}
				return nil
			},
			wantSends: 3,
		},
		{
			name: "client error is not retried",
			callErr: func(int) error {
				return &smithy.GenericAPIError{Code: "AccessDenied", Fault: smithy.FaultClient}
			},
			wantSends: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msgs := received("m", 3, t0.Add(-15*time.Second))
			victim := msgs[1]
			var mu sync.Mutex
			calls, victimSends := 0, 0
			api := &fakeAPI{ChangeFunc: func(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if tt.callErr != nil {
					if err := tt.callErr(calls); err != nil {
						return nil, err
					}
				}
				out := &sqs.ChangeMessageVisibilityBatchOutput{}
				for _, e := range in.Entries {
					if aws.ToString(e.ReceiptHandle) == victim.ReceiptHandle && tt.fail != nil {
						victimSends++
						if f, ok := tt.fail(victimSends); !ok {
							f.Id = e.Id
							out.Failed = append(out.Failed, f)
							continue
						}
					}
					out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
				}
				return out, nil
			}}
			m := newTestTable(t, Config{}, api)
			m.Add(msgs...)
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			if !m.Begin(victim, cancel) {
				t.Fatal("Start on a fresh lease = false")
			}

			m.Heartbeat(t.Context())

			if got := len(api.entries()[victim.ReceiptHandle]); got != tt.wantSends {
				t.Errorf("victim sent %d times; want %d", got, tt.wantSends)
			}
			if got := m.Alive(victim); got == tt.wantLost {
				t.Errorf("Alive(victim) = %v; want %v", got, !tt.wantLost)
			}
			wantLostMetric := 0.0
			if tt.wantLost {
				wantLostMetric = 1
				if cause := context.Cause(ctx); !errors.Is(cause, ErrLeaseLost) {
					t.Errorf("handler context cause = %v; want ErrLeaseLost", cause)
				}
				if m.Begin(victim, func(error) {}) {
					t.Error("Start on a lost lease = true; want false")
				}
			} else if ctx.Err() != nil {
				t.Errorf("handler context cancelled (%v) though the lease is held", context.Cause(ctx))
			}
			if got := testkit.Value(m.metrics.LeasesLost); got != wantLostMetric {
				t.Errorf("leases lost = %v; want %v", got, wantLostMetric)
			}
			for _, msg := range msgs {
				if msg != victim && !m.Alive(msg) {
					t.Errorf("bystander %s lost its lease", msg.ID)
				}
			}
			// A lost lease stays in the table until its handler is done.
			if got := m.Len(); got != 3 {
				t.Errorf("Len() = %d; want 3", got)
			}
		})
	}
}

func TestHeartbeatExpiredLeaseIsLost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		received time.Time
		wantLost bool
	}{
		{name: "past its deadline", received: t0.Add(-31 * time.Second), wantLost: true},
		{name: "at its deadline", received: t0.Add(-30 * time.Second), wantLost: true},
		{name: "one second left", received: t0.Add(-29 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{}
			m := newTestTable(t, Config{}, api)
			msg := received("m", 1, tt.received)[0]
			m.Add(msg)
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			// The handler started while the lease was held; the clock then
			// reached t0.
			m.clock.Set(tt.received)
			if !m.Begin(msg, cancel) {
				t.Fatal("Start refused a lease that was held")
			}
			m.clock.Set(t0)

			m.Heartbeat(t.Context())

			if got := m.Alive(msg); got == tt.wantLost {
				t.Errorf("Alive = %v; want %v", got, !tt.wantLost)
			}
			calls := len(api.requests())
			if tt.wantLost {
				if calls != 0 {
					t.Errorf("%d calls for an expired lease; want none", calls)
				}
				if !errors.Is(context.Cause(ctx), ErrLeaseLost) {
					t.Errorf("handler context cause = %v; want ErrLeaseLost", context.Cause(ctx))
				}
				if got := testkit.Value(m.metrics.LeasesLost); got != 1 {
					t.Errorf("leases lost = %v; want 1", got)
				}
				// Lost once: another round counts nothing more.
				m.Heartbeat(t.Context())
				if got := testkit.Value(m.metrics.LeasesLost); got != 1 {
					t.Errorf("leases lost after a second round = %v; want 1", got)
				}
			} else if calls != 1 {
				t.Errorf("%d calls; want 1", calls)
			}
		})
	}
}

func TestHeartbeatHardLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		cfg           Config
		firstReceived time.Time
		// wantExtension is the one extension asked for at t0, the time
		// left until the limit.
		wantExtension int32
		limit         time.Time
	}{
		{
			name:          "max processing time",
			cfg:           Config{MaxProcessingTime: 40 * time.Second},
			firstReceived: t0.Add(-15 * time.Second),
			wantExtension: 25,
			limit:         t0.Add(25 * time.Second),
		},
		{
			name:          "12h since first receive",
			firstReceived: t0.Add(-12*time.Hour + 20*time.Second),
			wantExtension: 20,
			limit:         t0.Add(20 * time.Second),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{}
			m := newTestTable(t, tt.cfg, api)
			msg := received("m", 1, t0.Add(-15*time.Second))[0]
			msg.FirstReceivedAt = tt.firstReceived
			m.Add(msg)

			m.Heartbeat(t.Context())
			reqs := api.requests()
			if len(reqs) != 1 || len(reqs[0]) != 1 {
				t.Fatalf("requests = %v; want one with one entry", reqs)
			}
			if got := reqs[0][0].VisibilityTimeout; got != tt.wantExtension {
				t.Errorf("extension = %ds; want %ds (up to the limit, not past it)", got, tt.wantExtension)
			}

			// Ten seconds later the lease is due again but at its limit:
			// no call.
			m.clock.Set(t0.Add(10 * time.Second))
			m.Heartbeat(t.Context())
			if got := len(api.requests()); got != 1 {
				t.Errorf("%d calls after reaching the limit; want 1", got)
			}
			if !m.Alive(msg) {
				t.Error("lease lost before its deadline")
			}

			// At the limit it runs out and is lost.
			m.clock.Set(tt.limit)
			m.Heartbeat(t.Context())
			if got := len(api.requests()); got != 1 {
				t.Errorf("%d calls at the limit; want 1", got)
			}
			if m.Alive(msg) {
				t.Error("lease alive past its hard limit")
			}
		})
	}
}

func TestExtension(t *testing.T) {
	t.Parallel()
	type obs struct {
		n int
		d time.Duration
	}
	tests := []struct {
		name string
		obs  []obs
		want time.Duration
	}{
		{name: "no observations", want: 30 * time.Second},
		{name: "fast handlers", obs: []obs{{100, 2 * time.Second}}, want: 30 * time.Second},
		{name: "slow handlers", obs: []obs{{100, 45 * time.Second}}, want: 46 * time.Second},
		{name: "one slow in a hundred is below p99", obs: []obs{{99, time.Second}, {1, 100 * time.Second}}, want: 30 * time.Second},
		{name: "two slow in a hundred set p99", obs: []obs{{98, time.Second}, {2, 100 * time.Second}}, want: 101 * time.Second},
		{name: "capped at max extension", obs: []obs{{10, 2 * time.Hour}}, want: 10 * time.Minute},
		{name: "negative durations count as zero", obs: []obs{{10, -time.Second}}, want: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newTestTable(t, Config{MaxExtension: 10 * time.Minute}, &fakeAPI{})
			for _, o := range tt.obs {
				for range o.n {
					m.ObserveDuration(o.d)
				}
			}
			if got := m.Extension(); got != tt.want {
				t.Errorf("Extension() = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestExtensionFollowsObservations(t *testing.T) {
	t.Parallel()
	m := newTestTable(t, Config{MaxExtension: 10 * time.Minute}, &fakeAPI{})
	for range 100 {
		m.ObserveDuration(50 * time.Second)
	}
	if got := m.Extension(); got != 51*time.Second {
		t.Fatalf("Extension() = %v; want 51s", got)
	}
	for range 10000 {
		m.ObserveDuration(70 * time.Second)
	}
	if got := m.Extension(); got != 71*time.Second {
		t.Errorf("Extension() after slower handlers = %v; want 71s", got)
	}

	// The heartbeat asks for it.
	msg := received("m", 1, t0.Add(-15*time.Second))[0]
	m.Add(msg)
	m.Heartbeat(t.Context())
	reqs := m.api.requests()
	if len(reqs) != 1 || reqs[0][0].VisibilityTimeout != 71 {
		t.Errorf("requests = %v; want one extension of 71s", reqs)
	}
}

func TestRelease(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		n    int
		err  error // every call fails with it
	}{
		{name: "25 in three batches", n: 25},
		{name: "one", n: 1},
		{name: "removed even when the call fails", n: 12, err: &smithy.GenericAPIError{Code: "AccessDenied", Fault: smithy.FaultClient}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{}
			if tt.err != nil {
				api.ChangeFunc = func(context.Context, *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
					return nil, tt.err
				}
			}
			m := newTestTable(t, Config{}, api)
			msgs := received("m", tt.n, t0)
			m.Add(msgs...)

			m.Release(t.Context(), msgs)

			reqs := api.requests()
			if want := (tt.n + 9) / 10; len(reqs) != want {
				t.Errorf("%d calls; want %d", len(reqs), want)
			}
			checkBatches(t, reqs)
			sent := api.entries()
			for _, msg := range msgs {
				es := sent[msg.ReceiptHandle]
				if len(es) != 1 || es[0].VisibilityTimeout != 0 {
					t.Errorf("%s: entries %v; want one with visibility 0", msg.ID, es)
				}
				if m.Alive(msg) {
					t.Errorf("%s still alive after Release", msg.ID)
				}
			}
			if got := m.Len(); got != 0 {
				t.Errorf("Len() = %d; want 0", got)
			}
			if got := m.roomReturned(); got != int64(tt.n) {
				t.Errorf("room returned %d times; want %d", got, tt.n)
			}
			if got := testkit.Value(m.metrics.MessagesReleased); got != float64(tt.n) {
				t.Errorf("messages released = %v; want %d", got, tt.n)
			}
			if got := testkit.Value(m.metrics.MessagesInFlight); got != 0 {
				t.Errorf("messages in flight = %v; want 0", got)
			}

			// Releasing again frees no more room.
			m.Release(t.Context(), msgs)
			if got := m.roomReturned(); got != int64(tt.n) {
				t.Errorf("room returned %d times after a second Release; want %d", got, tt.n)
			}
			m.Release(t.Context(), nil)
		})
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{}
	m := newTestTable(t, Config{}, api)
	msgs := received("m", 2, t0)
	m.Add(msgs...)

	m.Retry(t.Context(), msgs[0], 90*time.Second)

	reqs := api.requests()
	if len(reqs) != 1 || len(reqs[0]) != 1 {
		t.Fatalf("requests = %v; want one with one entry", reqs)
	}
	if e := reqs[0][0]; aws.ToString(e.ReceiptHandle) != msgs[0].ReceiptHandle || e.VisibilityTimeout != 90 {
		t.Errorf("entry = %s with %ds; want %s with 90s", aws.ToString(e.ReceiptHandle), e.VisibilityTimeout, msgs[0].ReceiptHandle)
	}
	if m.Alive(msgs[0]) || !m.Alive(msgs[1]) {
		t.Errorf("Alive = %v, %v; want false, true", m.Alive(msgs[0]), m.Alive(msgs[1]))
	}
	if got := m.roomReturned(); got != 1 {
		t.Errorf("room returned %d times; want 1", got)
	}
	if got := testkit.Value(m.metrics.MessagesRetried); got != 1 {
		t.Errorf("messages retried = %v; want 1", got)
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

func TestExtensionBatchesCountsHeartbeatsOnly(t *testing.T) {
	t.Parallel()
	m := newTestTable(t, Config{}, &fakeAPI{})
	msgs := received("m", 21, t0)
	m.Add(msgs...)
	m.Release(t.Context(), msgs[:20])
	m.Retry(t.Context(), msgs[20], time.Minute)
	if got := testkit.Value(m.metrics.ExtensionBatches); got != 0 {
		t.Errorf("extension batches = %v after only a release and a retry; want 0", got)
	}
}

// TestRetriesShareBatches: retries decided at about the same time share
// ChangeMessageVisibilityBatch calls, each entry with its own delay.
func TestRetriesShareBatches(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{}
	m := newTestTable(t, Config{}, api)
	msgs := received("r", 25, t0)
	m.Add(msgs...)
	var wg sync.WaitGroup
	for i, msg := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Retry(t.Context(), msg, time.Duration(i+1)*time.Second)
		}()
	}
	wg.Wait()
	reqs := api.requests()
	entries := 0
	delays := map[string]int32{}
	for _, r := range reqs {
		entries += len(r)
		for _, e := range r {
			delays[aws.ToString(e.ReceiptHandle)] = e.VisibilityTimeout
		}
	}
	if entries != 25 || len(reqs) > 5 {
		t.Errorf("%d entries in %d calls; want 25 entries in at most 5 calls (ideally 3)", entries, len(reqs))
	}
	for i, msg := range msgs {
		if got := delays[msg.ReceiptHandle]; got != int32(i+1) {
			t.Errorf("%s retried with %ds; want %ds", msg.ID, got, i+1)
		}
	}
	if m.Len() != 0 || testkit.Value(m.metrics.MessagesRetried) != 25 {
		t.Errorf("after the retries: %d leases, %v retried; want 0, 25", m.Len(), testkit.Value(m.metrics.MessagesRetried))
	}
}

// TestRefusedHandledLeaseIsNotCountedLost: a heartbeat that races the
// delete of a handled lease is refused; that is the delete arriving first,
// not a lost lease.
func TestRefusedHandledLeaseIsNotCountedLost(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{ChangeFunc: func(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
		out := &sqs.ChangeMessageVisibilityBatchOutput{}
		for _, e := range in.Entries {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true})
		}
		return out, nil
	}}
	m := newTestTable(t, Config{}, api)
	msgs := received("m", 2, t0.Add(-15*time.Second))
	m.Add(msgs...)
	m.Handled(msgs[0])
	m.Heartbeat(t.Context())
	if got := testkit.Value(m.metrics.LeasesLost); got != 1 {
		t.Errorf("leases lost = %v; want 1 (only the lease not being deleted)", got)
	}
	if m.Alive(msgs[0]) || m.Alive(msgs[1]) {
		t.Error("a refused lease is still alive: its handle must not be used again")
	}
}
