package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// report is what the demo measured, printed as the summary and checked.
type report struct {
	sent, poison int
	timings

	received, succeeded, failed, deleted int
	unexpected                           int // panic, timeout and lost outcomes
	requests                             float64
	handled                              handled // the handler's own counts

	workerExit int
	left       sqstest.Depth
	dlq        int
}

func (r *report) fromMetrics(m sqstest.Metrics) {
	processed := func(outcome string) int {
		return int(m.Value("sqsworker_messages_processed_total", "outcome", outcome))
	}
	r.received = int(m.Value("sqsworker_messages_received_total"))
	r.succeeded = processed("success")
	r.failed = processed("failure")
	r.unexpected = processed("panic") + processed("timeout") + processed("lost")
	r.deleted = int(m.Value("sqsworker_messages_deleted_total"))
	r.requests = m.Value("sqsworker_sqs_requests_total")
}

func (r report) print(w io.Writer) {
	fmt.Fprintf(w, `
demo summary
  messages sent        %d (%d poison)
  received             %d
  succeeded            %d
  failed (retried)     %d
  in the DLQ           %d
  SQS requests         %.0f (%.2f per message)
  throughput           %.0f msg/s (%d succeeded in %.1fs, worker start to queue empty)
`, r.sent, r.poison, r.received, r.succeeded, r.failed, r.dlq,
		r.requests, r.requests/float64(r.sent),
		rate(r.succeeded, r.done), r.succeeded, r.done.Seconds())
	if r.poison > 0 && r.succeeded > 0 && r.lastSuccess > 0 {
		// The poison messages' retry backoffs, not the worker's speed,
		// set the time to an empty queue; say so.
		fmt.Fprintf(w, "                       %.0f msg/s until the last success at %.1fs; the rest is the poison retries' backoff\n",
			rate(r.succeeded, r.lastSuccess), r.lastSuccess.Seconds())
	}
	fmt.Fprintf(w, "  queue left           visible %d, in flight %d\n", r.left.Visible, r.left.InFlight)
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// check returns an error naming everything that is off.
func (r report) check() error {
	good := r.sent - r.poison
	var off []string
	expect := func(ok bool, format string, args ...any) {
		if !ok {
			off = append(off, fmt.Sprintf(format, args...))
		}
	}
	expect(r.workerExit == 0, "the worker exited with status %d, want 0", r.workerExit)
	expect(r.succeeded == good, "the worker counted %d successes, want %d", r.succeeded, good)
	expect(r.deleted == good, "the worker deleted %d messages, want %d", r.deleted, good)
	expect(r.handled.OK == good, "the handler handled %d orders, want %d (duplicates or losses)", r.handled.OK, good)
	expect(r.failed == maxReceiveCount*r.poison, "the worker counted %d failures, want %d (%d poison × %d receives)",
		r.failed, maxReceiveCount*r.poison, r.poison, maxReceiveCount)
	expect(r.unexpected == 0, "the worker counted %d panic, timeout or lost outcomes, want 0", r.unexpected)
	expect(r.dlq == r.poison, "the DLQ holds %d messages, want %d", r.dlq, r.poison)
	left := r.left.Visible + r.left.InFlight + r.left.Delayed
	expect(left == 0, "%d messages are left in the queue after the worker stopped, want 0", left)
	if len(off) > 0 {
		return errors.New("the numbers are off:\n  " + strings.Join(off, "\n  "))
	}
	return nil
}
