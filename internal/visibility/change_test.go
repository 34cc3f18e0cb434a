package visibility

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

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
