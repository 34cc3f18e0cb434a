package main

import (
	"context"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// recording is a built-in handler that keeps the message it was given.
type recording struct{ got chan *message.Message }

func (r recording) Handle(_ context.Context, m *message.Message) error {
	r.got <- m
	return nil
}

// TestBuiltinHandlersGetTheReceiptHandle: the public Message leaves the
// receipt handle out, yet the built-in handlers run through the public
// package still receive it (a Lambda event carries it), with every other
// field of the message.
func TestBuiltinHandlersGetTheReceiptHandle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := server.CreateQueue(ctx, "builtin-receipt", sqstest.QueueOptions{VisibilityTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.SendBodies(ctx, q.URL, []string{"hello"}, nil); err != nil {
		t.Fatal(err)
	}
	rec := recording{got: make(chan *message.Message, 1)}
	w, err := sqsworker.New(server.Client(), q.URL, builtin{h: rec}, &sqsworker.Config{WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(ctx) }()
	var m *message.Message
	select {
	case m = <-rec.got:
	case <-ctx.Done():
		t.Fatal("the handler was not called")
	}
	if m.ReceiptHandle == "" || m.ID == "" || m.Body != "hello" || m.QueueURL != q.URL || m.ReceiveCount != 1 {
		t.Errorf("built-in handler got %+v; want the receipt handle, id, body, queue and receive count", m)
	}
	testkit.Eventually(t, time.Minute, "the message deleted", func() bool {
		d, err := server.QueueDepth(ctx, q.URL)
		return err == nil && d.Visible+d.InFlight == 0
	})
}
