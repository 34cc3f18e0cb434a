package handler

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

// TestBatchInvocationCancelledOnlyWhenEveryCallGaveUp: a batch's
// invocation goes on while any of its messages still waits for it (a
// lost lease does not cut it short for the rest), and is cancelled once
// every message's context has ended.
func TestBatchInvocationCancelledOnlyWhenEveryCallGaveUp(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	ended := make(chan error, 1)
	inv := invokerFunc(func(ctx context.Context, _ []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	const n = 3
	b, err := NewBatcher(BatchConfig{Size: n, Window: time.Minute, Invocations: 1}, inv)
	if err != nil {
		t.Fatal(err)
	}
	cancels := make([]context.CancelFunc, n)
	returned := make(chan error, n)
	for i := range n {
		ctx, cancel := context.WithCancel(t.Context())
		cancels[i] = cancel
		go func() { returned <- b.Handle(ctx, batchMessage("m"+strconv.Itoa(i), "")) }()
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the full batch was never sent")
	}
	for _, cancel := range cancels[:n-1] {
		cancel()
		if err := <-returned; !errors.Is(err, context.Canceled) {
			t.Errorf("a call whose context ended returned %v, want context.Canceled", err)
		}
	}
	select {
	case err := <-ended:
		t.Fatalf("invocation ended (%v) while a message still waited for it", err)
	default:
	}
	cancels[n-1]()
	if err := <-returned; !errors.Is(err, context.Canceled) {
		t.Errorf("the last call returned %v, want context.Canceled", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("invocation ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("invocation not cancelled once every message gave up")
	}
}
