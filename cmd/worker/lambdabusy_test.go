package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/lambdatest"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// oneAtATime stands in front of the emulator and answers an invoke that
// arrives while another runs the way the emulator documents its busy
// answer, 400 Runtime.Unavailable. The emulator built from the module
// cannot give that answer itself: on a second invoke at once it crashes
// (a nil dereference after "ReserveFailed: AlreadyReserved").
type oneAtATime struct {
	next           http.Handler
	running        atomic.Bool
	busy, admitted atomic.Int64
}

func (o *oneAtATime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !o.running.CompareAndSwap(false, true) {
		o.busy.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"errorMessage":"the runtime is running another invocation","errorType":"Runtime.Unavailable"}`)
		return
	}
	defer o.running.Store(false)
	o.admitted.Add(1)
	o.next.ServeHTTP(w, r)
}

// TestLambdaEmulatorBusy runs four invocations at once against a function
// that takes one at a time: its busy answers slow the worker down, they
// do not fail messages. Every message reaches the function exactly once
// (a busy answer means it never saw the batch), is deleted, and none is
// dead-lettered.
func TestLambdaEmulatorBusy(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "lambda-busy", sqstest.QueueOptions{MaxReceiveCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	ok := bodies("ok", 60)
	if err := server.SendBodies(t.Context(), q.URL, ok, nil); err != nil {
		t.Fatal(err)
	}
	e := startEmulator(t, lambdatest.Options{})
	target, err := url.Parse(e.EndpointURL)
	if err != nil {
		t.Fatal(err)
	}
	gate := &oneAtATime{next: httputil.NewSingleHostReverseProxy(target)}
	front := httptest.NewServer(gate)
	t.Cleanup(front.Close)

	w := startWorker(t, "--queue-url", q.URL, "--wait-time", "1s", "--handler", "lambda",
		"--lambda-function", lambdatest.FunctionName, "--lambda-endpoint-url", front.URL,
		"--concurrency", "4", "--batch-size", "5", "--batch-window", "50ms",
		"--retry-backoff-min", "100ms", "--retry-backoff-max", "200ms")
	testkit.Eventually(t, 2*time.Minute, "every message deleted", func() bool {
		d := depth(t, q.URL)
		return d.Visible+d.InFlight == 0 && w.scrape().Value("sqsworker_messages_deleted_total") == float64(len(ok))
	})
	w.stop(syscall.SIGTERM, time.Minute)

	if gate.busy.Load() == 0 {
		t.Errorf("the function was never busy (%d invocations admitted): the test ran one invocation at a time", gate.admitted.Load())
	}
	s := seen(t, e.RecordDir)
	for _, b := range ok {
		if s[b] != 1 {
			t.Errorf("message %s reached the function %d times, want once", b, s[b])
		}
	}
	if d := depth(t, q.DLQURL); d.Visible != 0 {
		t.Errorf("%d messages dead-lettered; a busy function is backpressure, not a failure", d.Visible)
	}
	t.Logf("%d invocations admitted, %d answered busy", gate.admitted.Load(), gate.busy.Load())
}
