package ack

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

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
