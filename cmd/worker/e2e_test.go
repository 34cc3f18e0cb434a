package main

import (
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// sendAll creates a queue and sends n numbered bodies to it.
func sendAll(t *testing.T, prefix string, n int, opts sqstest.QueueOptions) (sqstest.Queue, []string) {
	t.Helper()
	q, err := server.CreateQueue(t.Context(), prefix, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := bodies(prefix, n)
	if err := server.SendBodies(t.Context(), q.URL, b, nil); err != nil {
		t.Fatal(err)
	}
	return q, b
}

func depth(t *testing.T, url string) sqstest.Depth {
	t.Helper()
	d, err := server.QueueDepth(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func requestsPerMessage(m sqstest.Metrics) float64 {
	return m.Value("sqsworker_sqs_requests_total") / m.Value("sqsworker_messages_received_total")
}

func TestFiveThousandMessagesNoneLost(t *testing.T) {
	const n = 5000
	q, sent := sendAll(t, "e2e-5k", n, sqstest.QueueOptions{})
	rec := newRecorder(t, nil)
	w := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--concurrency", "32", "--fetchers", "4", "--wait-time", "2s")

	testkit.Eventually(t, 3*time.Minute, "every message deleted", func() bool {
		return w.scrape().Value("sqsworker_messages_deleted_total") >= n
	})
	m := w.scrape()
	rpm := requestsPerMessage(m)
	if code := w.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}

	counts, total := rec.snapshot()
	lost, dup := 0, 0
	for _, b := range sent {
		switch c := counts[b]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	d := depth(t, q.URL)
	t.Logf("figures: sent=%d handled=%d lost=%d duplicates=%d visible=%d in_flight=%d sqs_requests_per_message=%.3f",
		n, total, lost, dup, d.Visible, d.InFlight, rpm)
	if lost != 0 || d.Visible != 0 || d.InFlight != 0 {
		t.Fatalf("lost %d, queue visible %d, in flight %d: want all 0", lost, d.Visible, d.InFlight)
	}
	// Coalescing: one receive and one delete per ten messages is 0.2.
	if rpm > 0.25 {
		t.Errorf("%.3f SQS requests per message, want <= 0.25", rpm)
	}
}

func TestLongHandlerIsKeptAliveNotRedelivered(t *testing.T) {
	q, sent := sendAll(t, "e2e-long", 3, sqstest.QueueOptions{VisibilityTimeout: 2})
	release := make(chan struct{})
	var releaseOnce sync.Once
	rec := newRecorder(t, func(string, int) int { <-release; return 200 })
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	w := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--visibility-timeout", "2s", "--wait-time", "1s")

	// Hold the handlers for 3x the visibility timeout, measured from when
	// they all started, then let them finish.
	testkit.Eventually(t, 30*time.Second, "3 handlers running", func() bool { _, n := rec.snapshot(); return n == 3 })
	held := time.After(6500 * time.Millisecond)
	<-held
	releaseOnce.Do(func() { close(release) })
	testkit.Eventually(t, 30*time.Second, "3 deletes", func() bool { return w.scrape().Value("sqsworker_messages_deleted_total") == 3 })
	m := w.scrape()
	w.stop(syscall.SIGTERM, time.Minute)

	counts, _ := rec.snapshot()
	for _, b := range sent {
		if counts[b] != 1 {
			t.Errorf("%s handled %d times, want 1 (redelivered while its handler ran)", b, counts[b])
		}
	}
	calls := m.Value("sqsworker_sqs_requests_total", "action", "ChangeMessageVisibilityBatch", "outcome", "ok")
	t.Logf("figures: extensions=%v change_visibility_batch_calls=%v", m.Value("sqsworker_visibility_extensions_total"), calls)
	if calls < 2 || m.Value("sqsworker_visibility_extensions_total") < 6 {
		t.Errorf("want >= 2 ChangeMessageVisibilityBatch calls extending >= 6 leases, got %v calls, %v extensions",
			calls, m.Value("sqsworker_visibility_extensions_total"))
	}
	if d := depth(t, q.URL); d.Visible+d.InFlight != 0 {
		t.Errorf("queue not empty: %+v", d)
	}
}

// TestFailingMessageRetriedThenDeadLettered: 5 of 1,000 messages always
// fail (HTTP 500); each is called exactly maxReceiveCount times, its retry
// delay apart, before SQS moves it to the dead-letter queue, and every
// other message is handled once.
func TestFailingMessageRetriedThenDeadLettered(t *testing.T) {
	const maxReceives, backoff = 5, time.Second
	q, err := server.CreateQueue(t.Context(), "e2e-poison", sqstest.QueueOptions{MaxReceiveCount: maxReceives})
	if err != nil {
		t.Fatal(err)
	}
	poison := bodies("poison", 5)
	good := bodies("good", 995)
	if err := server.SendBodies(t.Context(), q.URL, append(append([]string{}, poison...), good...), nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	gaps := map[string][]time.Duration{}
	last := map[string]time.Time{}
	rec := newRecorder(t, func(body string, _ int) int {
		if strings.HasPrefix(body, "poison") {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if at, ok := last[body]; ok {
				gaps[body] = append(gaps[body], now.Sub(at))
			}
			last[body] = now
			return 500
		}
		return 200
	})
	w := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL,
		"--retry-backoff-min", backoff.String(), "--retry-backoff-max", backoff.String(), "--wait-time", "1s")

	testkit.Eventually(t, time.Minute, "the poison messages in the DLQ", func() bool { return depth(t, q.DLQURL).Visible == len(poison) })
	testkit.Eventually(t, time.Minute, "every good message deleted", func() bool {
		return w.scrape().Value("sqsworker_messages_deleted_total") == float64(len(good))
	})
	m := w.scrape()
	w.stop(syscall.SIGTERM, time.Minute)

	counts, _ := rec.snapshot()
	lost, dup := countLostAndDuplicates(good, counts)
	for _, b := range good {
		if counts[b] != 1 {
			t.Errorf("good message %s handled %d times, want 1", b, counts[b])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	calls := make([]int, len(poison))
	for i, b := range poison {
		calls[i] = counts[b]
	}
	t.Logf("figures: poison_calls=%v retry_gaps=%v failures=%v dlq_visible=%d good=%d good_lost=%d good_duplicates=%d",
		calls, gaps[poison[0]], m.Value("sqsworker_messages_processed_total", "outcome", "failure"), len(poison), len(good), lost, dup)
	for i, b := range poison {
		if calls[i] != maxReceives {
			t.Errorf("%s handled %d times, want %d (maxReceiveCount)", b, calls[i], maxReceives)
		}
		for _, g := range gaps[b] {
			if g < backoff*9/10 {
				t.Errorf("%s came back after %s, before its %s retry delay", b, g, backoff)
			}
		}
	}
	if d := depth(t, q.URL); d.Visible+d.InFlight != 0 {
		t.Errorf("source queue not empty: %+v", d)
	}
}

func TestSIGTERMUnderLoadLosesNothing(t *testing.T) {
	const n = 3000
	q, sent := sendAll(t, "e2e-term", n, sqstest.QueueOptions{VisibilityTimeout: 60})
	rec := newRecorder(t, working(5*time.Millisecond))
	w := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--concurrency", "16",
		"--wait-time", "2s", "--shutdown-timeout", "20s")
	testkit.Eventually(t, time.Minute, "some messages handled", func() bool { _, total := rec.snapshot(); return total > 300 })
	start := time.Now()
	if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	took := time.Since(start)
	firstRun, handled := rec.snapshot()
	// Nothing is left in flight by the shutdown: what was not handled is
	// visible again at once (the queue's own timeout is 60s).
	d := depth(t, q.URL)
	t.Logf("figures: shutdown_took=%s handled_before=%d visible_after=%d in_flight_after=%d", took.Round(time.Millisecond), handled, d.Visible, d.InFlight)
	if d.InFlight != 0 {
		t.Fatalf("%d messages left in flight after shutdown", d.InFlight)
	}
	if d.Visible != n-len(firstRun) {
		t.Fatalf("visible %d after shutdown, want %d (sent %d, handled %d distinct)", d.Visible, n-len(firstRun), n, len(firstRun))
	}

	w2 := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--concurrency", "16", "--wait-time", "1s")
	testkit.Eventually(t, 2*time.Minute, "the rest handled", func() bool { c, _ := rec.snapshot(); return len(c) == n })
	testkit.Eventually(t, time.Minute, "the queue empty", func() bool { d := depth(t, q.URL); return d.Visible+d.InFlight == 0 })
	w2.stop(syscall.SIGTERM, 30*time.Second)
	counts, _ := rec.snapshot()
	dup := 0
	for _, b := range sent {
		dup += counts[b] - 1
	}
	t.Logf("figures: lost=0 duplicates=%d", dup)
	if dup != 0 {
		t.Errorf("%d messages handled twice across the restart, want 0", dup)
	}
}
