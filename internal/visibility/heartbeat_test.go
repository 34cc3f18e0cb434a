package visibility

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

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
