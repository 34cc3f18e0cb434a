package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// TestIdleWorkerStopsAtOnce: SIGTERM on a worker whose long polls wait on
// an empty queue (the default 20 s wait) ends it within its stop grace, not
// its shutdown timeout, with no warning; after a run of messages too, and
// nothing is left in flight.
func TestIdleWorkerStopsAtOnce(t *testing.T) {
	for _, n := range []int{0, 500} {
		t.Run(map[int]string{0: "never received", 500: "after 500 messages"}[n], func(t *testing.T) {
			t.Parallel()
			q, _ := sendAll(t, "idle-stop", n, sqstest.QueueOptions{})
			rec := newRecorder(t, nil)
			w := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--shutdown-timeout", "30s")
			testkit.Eventually(t, time.Minute, "every message handled and a poll waiting", func() bool {
				c, _ := rec.snapshot()
				return len(c) == n && w.scrape().Value("sqsworker_receive_polls") >= 1
			})
			start := time.Now()
			if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
			took := time.Since(start)
			d := depth(t, q.URL)
			// The -race build sleeps a second at exit (GORACE atexit_sleep_ms):
			// the worker's own stop is between its two log lines.
			stopped := logGap(t, w.Logs(), "signal received", "worker stopped")
			t.Logf("figures: handled=%d stop_took=%s (process exit %s) in_queue_after=%d", n,
				stopped.Round(time.Millisecond), took.Round(time.Millisecond), d.Visible+d.InFlight)
			for _, line := range strings.Split(w.Logs(), "\n") {
				if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
					t.Errorf("warning at an idle stop: %s", line)
				}
			}
			if took >= 10*time.Second {
				t.Errorf("the stop took %s: it waited for the long polls instead of cancelling them", took)
			}
			if d.Visible+d.InFlight != 0 {
				t.Errorf("%d messages left in the queue, want 0", d.Visible+d.InFlight)
			}
		})
	}
}

// logGap is the time between the first log lines whose messages contain
// from and to.
func logGap(t *testing.T, logs, from, to string) time.Duration {
	t.Helper()
	var a, b float64
	for _, line := range strings.Split(logs, "\n") {
		var l struct {
			TS  float64 `json:"ts"`
			Msg string  `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch {
		case a == 0 && strings.Contains(l.Msg, from):
			a = l.TS
		case b == 0 && strings.Contains(l.Msg, to):
			b = l.TS
		}
	}
	if a == 0 || b == 0 {
		t.Fatalf("no log lines %q and %q", from, to)
	}
	return time.Duration((b - a) * float64(time.Second))
}
