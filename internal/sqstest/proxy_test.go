package sqstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// TestProxy checks that the fault proxy forwards, that a reset fault
// breaks requests, and that removing it heals the path.
func TestProxy(t *testing.T) {
	srv, err := sqstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	p, err := sqstest.StartProxy(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	client := sqstest.NewClient(p.Endpoint)
	list := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.ListQueues(ctx, &sqs.ListQueuesInput{})
		return err
	}
	if err := list(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	if err := p.Add(sqstest.Toxic{Name: "reset", Type: "reset_peer", Stream: "upstream"}); err != nil {
		t.Fatal(err)
	}
	if err := list(); err == nil {
		t.Fatal("request succeeded through a reset_peer fault")
	}
	if err := p.Remove("reset"); err != nil {
		t.Fatal(err)
	}
	if err := p.AddLatency("rtt", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := list(); err != nil {
		t.Fatalf("with latency: %v", err)
	}
	if err := p.RemoveLatency("rtt"); err != nil {
		t.Fatal(err)
	}
}
