package sqstest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/goleak"
)

// TestProxy checks that the fault proxy forwards, that a reset fault
// breaks requests, and that removing it heals the path.
func TestProxy(t *testing.T) {
	// toxiproxy's link goroutines may outlive Stop by a moment (and one
	// of its stubs can block for good on a closed link): not ours to fix.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).write"))
	srv, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	p, err := StartProxy(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	client := NewClient(p.Endpoint)
	list := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.ListQueues(ctx, &sqs.ListQueuesInput{})
		return err
	}
	if err := list(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	if err := p.Add(Toxic{Name: "reset", Type: "reset_peer", Stream: "upstream"}); err != nil {
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
