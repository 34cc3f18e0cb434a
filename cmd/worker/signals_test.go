package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// TestSecondSignalMeansNow: with a handler busy for a minute and long polls
// waiting 20s, a first SIGTERM starts the careful shutdown, which would
// wait for both; a second signal cancels them, releases the handler's
// message, says how many polls it cancelled, and the process is gone in
// about two seconds, far short of the poll's wait or the 30s timeout.
// The message is neither lost nor deleted; the server may hand it to one
// of the cancelled polls, as the log warns, and then it is back after its
// visibility timeout.
func TestSecondSignalMeansNow(t *testing.T) {
	q, _ := sendAll(t, "second-signal", 1, sqstest.QueueOptions{VisibilityTimeout: 30})
	started := make(chan struct{}, 1)
	done := make(chan struct{})
	rec := newRecorder(t, func(string, int) int {
		started <- struct{}{}
		<-done // the handler's own work: busy until the test ends
		return http.StatusOK
	})
	t.Cleanup(func() { close(done) }) // before the recorder's server closes
	p := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL,
		"--fetchers", "2", "--wait-time", "20s", "--shutdown-timeout", "30s")
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the message never reached the handler")
	}
	_ = p.Signal(syscall.SIGTERM)
	testkit.Eventually(t, 30*time.Second, "the worker to log the first signal", func() bool {
		return strings.Contains(p.Logs(), "stopping gracefully")
	})
	second := time.Now()
	if code := p.stop(syscall.SIGINT, 10*time.Second); code != 0 {
		t.Errorf("exit status %d after the second signal; want 0", code)
	}
	took := time.Since(second)
	logs := p.Logs()
	for _, want := range []string{"forced stop", "cancelling long polls still waiting"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	d := depth(t, q.URL)
	if d.Visible+d.InFlight != 1 {
		t.Errorf("after the forced stop: visible %d, in flight %d; want the handler's message still in the queue", d.Visible, d.InFlight)
	}
	t.Logf("figures: exit_after_second_signal=%s visible_after=%d in_flight_after=%d", took.Round(time.Millisecond), d.Visible, d.InFlight)
}

// TestSIGTERMKeepsPollsWhileAMessageMayBeReleased: a handler still busy
// at SIGTERM is cancelled at the shutdown deadline and its message
// released. The long polls (20s wait) are not cancelled while the worker
// still holds that message: a poll cancelled before the release could
// be handed it and take it away for a whole visibility timeout. So after
// the exit the message is visible at once, not in flight.
func TestSIGTERMKeepsPollsWhileAMessageMayBeReleased(t *testing.T) {
	t.Parallel()
	q, _ := sendAll(t, "stop-held", 1, sqstest.QueueOptions{VisibilityTimeout: 60})
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then a closed connection ends r's context
		started <- struct{}{}
		<-r.Context().Done() // the handler's own work: busy until the worker cancels it
	}))
	t.Cleanup(srv.Close)
	w := startWorker(t, "--queue-url", q.URL, "--http-url", srv.URL, "--fetchers", "2",
		"--shutdown-timeout", "4s", "--log-level", "debug")
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the message never reached the handler")
	}
	if code := w.stop(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	cancelled := strings.Count(w.Logs(), `"msg":"long poll cancelled at stop"`)
	d := depth(t, q.URL)
	t.Logf("figures: visible_after=%d in_flight_after=%d polls_cancelled=%d", d.Visible, d.InFlight, cancelled)
	if d.Visible != 1 || d.InFlight != 0 {
		t.Errorf("after the stop: visible %d, in flight %d; want the released message visible", d.Visible, d.InFlight)
	}
}
