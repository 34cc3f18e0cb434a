package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// faultLasts holds a fault in place for d: the length of the fault is the
// condition under test, not a wait for something to happen.
func faultLasts(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// TestNetworkFaultsLoseNothing puts a TCP fault proxy between the worker
// and the server for the whole run and, while messages flow, adds latency,
// then resets half the connections, then stalls every connection. When the
// faults end the worker must finish the queue by itself, with nothing lost.
func TestNetworkFaultsLoseNothing(t *testing.T) {
	const n, step = 3000, 400
	q, sent := sendAll(t, "net-faults", n, sqstest.QueueOptions{VisibilityTimeout: 5})
	proxy, err := sqstest.StartProxy(server.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Stop()
	rec := newRecorder(t, working(2*time.Millisecond))
	w := startWorker(t, "--queue-url", q.URL, "--endpoint-url", proxy.Endpoint, "--http-url", rec.srv.URL,
		"--concurrency", "16", "--fetchers", "2", "--wait-time", "1s", "--visibility-timeout", "5s")

	progress := func(what string) {
		t.Helper()
		_, from := rec.snapshot()
		testkit.Eventually(t, 2*time.Minute, fmt.Sprintf("%d more handled %s", step, what), func() bool {
			_, total := rec.snapshot()
			return total >= from+step
		})
	}
	progress("before any fault")

	if err := proxy.AddLatency("slow", 150*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	progress("with 150ms added to every round trip")
	if err := proxy.RemoveLatency("slow"); err != nil {
		t.Fatal(err)
	}

	if err := proxy.Add(sqstest.Toxic{Name: "reset", Type: "reset_peer", Stream: "upstream", Toxicity: 0.5,
		Attributes: map[string]any{"timeout": 0}}); err != nil {
		t.Fatal(err)
	}
	progress("with half the connections reset")
	if err := proxy.Remove("reset"); err != nil {
		t.Fatal(err)
	}

	// Nothing comes back on any connection, open or new, for 4s: requests
	// hang until their own timeouts.
	_, beforeStall := rec.snapshot()
	if err := proxy.Add(sqstest.Toxic{Name: "stall", Type: "timeout", Stream: "downstream",
		Attributes: map[string]any{"timeout": 0}}); err != nil {
		t.Fatal(err)
	}
	faultLasts(4 * time.Second)
	if err := proxy.Remove("stall"); err != nil {
		t.Fatal(err)
	}
	_, afterStall := rec.snapshot()

	testkit.Eventually(t, 3*time.Minute, "every message handled after the faults", func() bool {
		c, _ := rec.snapshot()
		return len(c) == n
	})
	testkit.Eventually(t, 2*time.Minute, "the queue empty", func() bool { d := depth(t, q.URL); return d.Visible+d.InFlight == 0 })
	testkit.Eventually(t, time.Minute, "the worker ready again", w.ready)
	m := w.scrape()
	if code := w.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	counts, _ := rec.snapshot()
	lost, dup := countLostAndDuplicates(sent, counts)
	t.Logf("figures: sent=%d lost=%d duplicates=%d handled_during_stall=%d sqs_request_errors=%.0f leases_lost=%.0f",
		n, lost, dup, afterStall-beforeStall, m.Value("sqsworker_sqs_requests_total", "action", "ReceiveMessage", "outcome", "error")+
			m.Value("sqsworker_sqs_requests_total", "action", "DeleteMessageBatch", "outcome", "error")+
			m.Value("sqsworker_sqs_requests_total", "action", "ChangeMessageVisibilityBatch", "outcome", "error"),
		m.Value("sqsworker_leases_lost_total"))
	if lost != 0 {
		t.Errorf("%d messages lost", lost)
	}
}
