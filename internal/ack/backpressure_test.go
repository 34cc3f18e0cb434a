package ack

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

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
