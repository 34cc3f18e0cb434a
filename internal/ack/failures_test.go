package ack

import (
	"context"
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
