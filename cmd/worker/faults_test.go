package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// countLostAndDuplicates compares what was sent with what was handled.
func countLostAndDuplicates(sent []string, counts map[string]int) (lost, dup int) {
	for _, b := range sent {
		switch c := counts[b]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	return lost, dup
}

func TestKill9ThenRestartLosesNothing(t *testing.T) {
	const n = 10000
	q, sent := sendAll(t, "fault-kill", n, sqstest.QueueOptions{VisibilityTimeout: 3})
	rec := newRecorder(t, working(2*time.Millisecond))
	args := []string{"--queue-url", q.URL, "--http-url", rec.srv.URL, "--concurrency", "32", "--fetchers", "4",
		"--wait-time", "1s", "--visibility-timeout", "3s"}
	w := startWorker(t, args...)
	killAt := 1000 + rand.IntN(6000) //nolint:gosec // a random moment, not a secret
	testkit.Eventually(t, 2*time.Minute, fmt.Sprintf("%d handled", killAt), func() bool { _, total := rec.snapshot(); return total >= killAt })
	inFlight := w.scrape().Value("sqsworker_messages_in_flight")
	w.Kill()
	_, handledAtKill := rec.snapshot()

	w2 := startWorker(t, args...)
	testkit.Eventually(t, 3*time.Minute, "every message handled", func() bool { c, _ := rec.snapshot(); return len(c) == n })
	testkit.Eventually(t, time.Minute, "the queue empty", func() bool { d := depth(t, q.URL); return d.Visible+d.InFlight == 0 })
	w2.stop(syscall.SIGTERM, 30*time.Second)
	counts, _ := rec.snapshot()
	lost, dup := countLostAndDuplicates(sent, counts)
	t.Logf("figures: killed_after=%d in_flight_at_kill=%.0f lost=%d duplicates=%d", handledAtKill, inFlight, lost, dup)
	if lost != 0 {
		t.Errorf("%d messages lost", lost)
	}
	// What was in flight at the kill may be handled again; nothing else.
	// The gauge was read just before the kill, so allow one more fetch.
	if float64(dup) > inFlight+40 {
		t.Errorf("%d duplicates, more than the %.0f messages in flight at the kill", dup, inFlight)
	}
}

func TestSIGTERMThreeTimesNoLossNoDuplicates(t *testing.T) {
	const n = 3000
	q, sent := sendAll(t, "fault-term3", n, sqstest.QueueOptions{VisibilityTimeout: 60})
	rec := newRecorder(t, working(3*time.Millisecond))
	args := []string{"--queue-url", q.URL, "--http-url", rec.srv.URL, "--concurrency", "16", "--wait-time", "1s", "--shutdown-timeout", "10s"}
	for round := 1; round <= 3; round++ {
		_, before := rec.snapshot()
		w := startWorker(t, args...)
		testkit.Eventually(t, time.Minute, "progress", func() bool { _, total := rec.snapshot(); return total >= before+400 })
		start := time.Now()
		if code := w.stop(syscall.SIGTERM, 20*time.Second); code != 0 {
			t.Fatalf("round %d: exit status %d", round, code)
		}
		d := depth(t, q.URL)
		t.Logf("figures: round=%d shutdown_took=%s in_flight_after=%d", round, time.Since(start).Round(time.Millisecond), d.InFlight)
		if d.InFlight != 0 {
			t.Fatalf("round %d: %d messages left in flight by the shutdown", round, d.InFlight)
		}
	}
	w := startWorker(t, args...)
	testkit.Eventually(t, 2*time.Minute, "every message handled", func() bool { c, _ := rec.snapshot(); return len(c) == n })
	testkit.Eventually(t, time.Minute, "the queue empty", func() bool { d := depth(t, q.URL); return d.Visible+d.InFlight == 0 })
	w.stop(syscall.SIGTERM, 20*time.Second)
	counts, _ := rec.snapshot()
	lost, dup := countLostAndDuplicates(sent, counts)
	t.Logf("figures: lost=%d duplicates=%d", lost, dup)
	if lost != 0 || dup != 0 {
		t.Errorf("lost %d, duplicates %d: want 0 and 0", lost, dup)
	}
}

// sendGroups creates a FIFO queue and sends perGroup messages to each of
// groups groups, interleaved: body "gGG-SSSS" is message SSSS of group gGG.
func sendGroups(t *testing.T, prefix string, groups, perGroup int, opts sqstest.QueueOptions) (sqstest.Queue, []string) {
	t.Helper()
	q, err := server.CreateQueue(t.Context(), prefix, opts)
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	for i := 0; i < perGroup; i++ {
		for g := 0; g < groups; g++ {
			sent = append(sent, fmt.Sprintf("g%02d-%04d", g, i))
		}
	}
	if err := server.SendBodies(t.Context(), q.URL, sent, func(i int) string { return sent[i][:3] }); err != nil {
		t.Fatal(err)
	}
	return q, sent
}

// countOutOfOrder counts the successes that were not the group's next
// message (groups map each group to the sequence numbers that succeeded,
// in order), naming the first few.
func countOutOfOrder(t *testing.T, groups map[string][]int) int {
	t.Helper()
	n := 0
	for g, seqs := range groups {
		for i, s := range seqs {
			if s != i {
				n++
				if n <= 5 {
					t.Errorf("group %s: success #%d was message %d", g, i, s)
				}
			}
		}
	}
	return n
}

func TestFIFOGroupsInOrderDespiteFailures(t *testing.T) {
	const groups, perGroup = 20, 200
	q, _ := sendGroups(t, "fault-fifo", groups, perGroup, sqstest.QueueOptions{FIFO: true})
	var mu sync.Mutex
	handled := map[string][]int{} // group → sequence numbers that succeeded, in handling order
	failures := 0
	rng := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // a fixed seed, for failures
	rec := newRecorder(t, func(body string, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		if rng.IntN(20) == 0 {
			failures++
			return 500
		}
		seq, _ := strconv.Atoi(body[4:])
		handled[body[:3]] = append(handled[body[:3]], seq)
		return 200
	})
	w := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--concurrency", "16",
		"--wait-time", "1s", "--retry-backoff-min", "0s", "--retry-backoff-max", "0s")
	testkit.Eventually(t, 3*time.Minute, "every message handled", func() bool {
		return w.scrape().Value("sqsworker_messages_deleted_total") >= groups*perGroup
	})
	w.stop(syscall.SIGTERM, 30*time.Second)
	mu.Lock()
	defer mu.Unlock()
	outOfOrder := countOutOfOrder(t, handled)
	for g, seqs := range handled {
		if len(seqs) != perGroup {
			t.Errorf("group %s: %d messages succeeded, want %d", g, len(seqs), perGroup)
		}
	}
	t.Logf("figures: groups=%d messages=%d injected_failures=%d out_of_order=%d", groups, groups*perGroup, failures, outOfOrder)
}

// TestHeartbeatsAtScaleNoRedelivery: thousands of messages held by their
// handlers for more than three visibility timeouts are each handled once,
// no lease lost, the heartbeat extending them in full batches.
func TestHeartbeatsAtScaleNoRedelivery(t *testing.T) {
	const n = 2000
	// With a 3s visibility timeout the heartbeat ticks every second (a
	// third of it), and every lease is due at every tick (two ticks plus a
	// second's grace ahead), so each tick is one round that extends them
	// all. Ticks never come faster than that: ten rounds counted after
	// every message reached its handler span at least nine ticks, three
	// visibility timeouts since each message was received.
	const visibilityTimeout, tick = 3 * time.Second, time.Second
	const holdRounds = int(3*visibilityTimeout/tick) + 1
	q, sent := sendAll(t, "fault-hb", n, sqstest.QueueOptions{VisibilityTimeout: int(visibilityTimeout / time.Second)})
	release := make(chan struct{})
	var releaseOnce sync.Once
	rec := newRecorder(t, func(string, int) int { <-release; return 200 })
	// Cleanups run last-in first-out: free the handlers before the
	// recorder's server waits for them, even when the test fails.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	w := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--concurrency", strconv.Itoa(n),
		"--prefetch", "0", "--fetchers", "8", "--wait-time", "1s", "--visibility-timeout", "3s")
	testkit.Eventually(t, time.Minute, "every message held by a handler", func() bool { c, _ := rec.snapshot(); return len(c) == n })
	before := w.scrape()
	var after sqstest.Metrics
	testkit.Eventually(t, 2*time.Minute, fmt.Sprintf("%d heartbeat rounds while every message is held", holdRounds), func() bool {
		after = w.scrape()
		return after.Value("sqsworker_heartbeat_rounds_total")-before.Value("sqsworker_heartbeat_rounds_total") >= float64(holdRounds)
	})
	releaseOnce.Do(func() { close(release) })
	testkit.Eventually(t, time.Minute, "every message deleted", func() bool { return w.scrape().Value("sqsworker_messages_deleted_total") == n })
	w.stop(syscall.SIGTERM, 30*time.Second)

	counts, total := rec.snapshot()
	_, dup := countLostAndDuplicates(sent, counts)
	calls := after.Value("sqsworker_visibility_extension_batches_total") - before.Value("sqsworker_visibility_extension_batches_total")
	exts := after.Value("sqsworker_visibility_extensions_total") - before.Value("sqsworker_visibility_extensions_total")
	rounds := exts / n
	t.Logf("figures: held=%d redeliveries=%d extension_calls=%.0f rounds=%.1f calls_per_round=%.1f (ideal %d)",
		n, dup, calls, rounds, calls/rounds, (n+9)/10)
	if total != n || dup != 0 {
		t.Errorf("%d handler calls for %d messages: redelivered while held", total, n)
	}
	if lost := after.Value("sqsworker_leases_lost_total"); lost != 0 {
		t.Errorf("%.0f leases lost while held", lost)
	}
	if rounds < 1 || calls/rounds > 1.05*float64((n+9)/10) {
		t.Errorf("%.1f extension calls per round, want <= %.0f", calls/rounds, 1.05*float64((n+9)/10))
	}
}
