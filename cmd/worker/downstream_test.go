package main

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// sample is what the worker's metrics said at one moment of an outage.
type sample struct {
	at                       time.Time
	calls, received          float64 // handler calls ended, messages received, so far
	state, held, concurrency float64
}

// watchOutage scrapes the worker once a second for d, the length of the
// outage under test.
func watchOutage(w proc, d time.Duration) []sample {
	end := time.Now().Add(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var out []sample
	for {
		m := w.scrape()
		out = append(out, sample{at: time.Now(),
			calls:       m.Value("sqsworker_handler_duration_seconds"),
			received:    m.Value("sqsworker_messages_received_total"),
			state:       m.Value("sqsworker_downstream_state"),
			held:        m.Value("sqsworker_messages_held"),
			concurrency: m.Value("sqsworker_concurrency_limit"),
		})
		if !time.Now().Before(end) {
			return out
		}
		<-tick.C
	}
}

// perSecond counts the calls that arrived within [from, to), one count
// per whole second from from.
func perSecond(calls []call, from, to time.Time) []int {
	counts := make([]int, int(to.Sub(from)/time.Second))
	for _, c := range calls {
		if !c.at.Before(from) && c.at.Before(to) {
			if i := int(c.at.Sub(from) / time.Second); i < len(counts) {
				counts[i]++
			}
		}
	}
	return counts
}

// checkBreakerLog checks that the worker said once that the downstream
// failed and once that it recovered, at info, and wrote no warning about
// any one message. It returns how many messages were handed back to SQS
// for a retry, and the highest receive count among them.
func checkBreakerLog(t *testing.T, logs string) (retries, maxReceiveCount int) {
	t.Helper()
	opened, closed, warned := 0, 0, 0
	for _, l := range logLines(logs) {
		switch {
		case strings.HasPrefix(l.Msg, "downstream failing"):
			opened++
			if l.Level != "info" {
				t.Errorf("breaker-open line at %s, want info: %q", l.Level, l.Msg)
			}
		case strings.HasPrefix(l.Msg, "downstream recovered"):
			closed++
			if l.Level != "info" {
				t.Errorf("breaker-close line at %s, want info: %q", l.Level, l.Msg)
			}
		case l.Msg == "handler failed; will retry the message":
			retries++
			maxReceiveCount = max(maxReceiveCount, l.ReceiveCount)
		}
		if l.MessageID != "" && l.Level != "info" && l.Level != "debug" {
			warned++
			if warned <= 3 {
				t.Errorf("%s line about one message: %q", l.Level, l.Msg)
			}
		}
	}
	if opened != 1 || closed != 1 {
		t.Errorf("%d breaker-open lines and %d breaker-close lines, want 1 and 1", opened, closed)
	}
	if warned > 0 {
		t.Errorf("%d warning lines about single messages, want none", warned)
	}
	return retries, maxReceiveCount
}

// TestOutageHoldsMessagesNoneLost takes the handler's downstream away for
// a minute after a fifth of the queue is handled: first answering 503 to
// every call, then refusing connections. The worker must neither spend
// the messages' receives (nothing good in the dead-letter queue) nor lose
// any, must leave the downstream alone but for its probes, and must finish
// the queue soon after the downstream is back.
func TestOutageHoldsMessagesNoneLost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		start, end func(e *endpoint)
		// seen says whether the endpoint sees the calls of the outage.
		seen bool
	}{
		{name: "every call answered 503", seen: true,
			start: func(e *endpoint) { e.fail(http.StatusServiceUnavailable) }, end: func(e *endpoint) { e.fail(0) }},
		{name: "connections refused", start: (*endpoint).down, end: (*endpoint).up},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const n, maxReceives, outage, settle = 3000, 5, 60 * time.Second, 10 * time.Second
			q, sent := sendAll(t, "outage", n, sqstest.QueueOptions{MaxReceiveCount: maxReceives})
			e := newEndpoint(t, takes(10*time.Millisecond))
			w := startWorker(t, "--queue-url", q.URL, "--http-url", e.url(), "--wait-time", "1s")

			e.awaitAccepted(n/5, 2*time.Minute)
			tt.start(e)
			began := time.Now()
			samples := watchOutage(w, outage)
			tt.end(e)
			recovered := time.Now()

			testkit.Eventually(t, 30*time.Second, "every message handled and the queue empty within 30s of the recovery", func() bool {
				if e.distinct() < n {
					return false
				}
				d := depth(t, q.URL)
				return d.Visible+d.InFlight == 0
			})
			drained := time.Since(recovered)
			m := w.scrape()
			if code := w.stop(syscall.SIGTERM, time.Minute); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}

			calls, _, counts := e.snapshot()
			lost, dup := countLostAndDuplicates(sent, counts)
			dlq := depth(t, q.DLQURL)
			quiet := began.Add(settle)
			var openedAfter time.Duration = -1
			maxHeld, receivedQuiet, maxWorkerCalls := 0.0, 0.0, 0.0
			var first *sample
			for i := range samples {
				s := &samples[i]
				if openedAfter < 0 && s.state == 2 {
					openedAfter = s.at.Sub(began)
				}
				maxHeld = max(maxHeld, s.held)
				if s.at.Before(quiet) {
					continue
				}
				if first != nil {
					maxWorkerCalls = max(maxWorkerCalls, s.calls-samples[i-1].calls)
					receivedQuiet = s.received - first.received
				} else {
					first = s
				}
			}
			quietCalls := samples[len(samples)-1].calls - first.calls
			endpointMax := 0
			if tt.seen {
				endpointMax = slices.Max(perSecond(calls, quiet, recovered))
			}
			retries, maxReceiveCount := checkBreakerLog(t, w.Logs())
			t.Logf("figures: sent=%d handled=%d lost=%d duplicates=%d dlq=%d breaker_open_after=%s held_max=%.0f "+
				"calls_after_first_10s=%.0f max_calls_per_second=%.0f (endpoint saw %d) received_after_first_10s=%.0f "+
				"drained_after_recovery=%s downstream_failures=%.0f handed_back_to_sqs=%d highest_receive_count=%d of %d",
				n, len(counts), lost, dup, dlq.Visible, openedAfter, maxHeld,
				quietCalls, maxWorkerCalls, endpointMax, receivedQuiet,
				drained.Round(100*time.Millisecond), m.Value("sqsworker_downstream_failures_total"), retries, maxReceiveCount, maxReceives)
			if lost != 0 || len(counts) != n {
				t.Errorf("%d of %d messages handled, %d lost", len(counts), n, lost)
			}
			if dlq.Visible+dlq.InFlight != 0 {
				t.Errorf("%d good messages in the dead-letter queue, want 0", dlq.Visible+dlq.InFlight)
			}
			if maxWorkerCalls > 2 || endpointMax > 2 {
				t.Errorf("after the outage's first %s: up to %.0f handler calls a second (endpoint counted %d), want <= 2",
					settle, maxWorkerCalls, endpointMax)
			}
		})
	}
}

// TestAlwaysFailingMessagesDoNotOpenTheBreaker: a tenth of the messages
// always fail (HTTP 500, the message's fault, not the downstream's). The
// breaker stays closed, so the good ones are handled at once, and each bad
// one is called exactly the redrive policy's maxReceiveCount times before
// SQS moves it to the dead-letter queue. (One in two hundred is
// TestFailingMessageRetriedThenDeadLettered.)
func TestAlwaysFailingMessagesDoNotOpenTheBreaker(t *testing.T) {
	t.Parallel()
	const n, bad, maxReceives = 1000, 100, 5
	q, sent := sendAll(t, "poison-tenth", n, sqstest.QueueOptions{MaxReceiveCount: maxReceives})
	isBad := func(body string) bool { i, _ := strconv.Atoi(body[len(body)-5:]); return i%(n/bad) == 0 }
	e := newEndpoint(t, func(body string, _ http.Header) int {
		if isBad(body) {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	w := startWorker(t, "--queue-url", q.URL, "--http-url", e.url(), "--wait-time", "1s",
		"--retry-backoff-min", "0s", "--retry-backoff-max", "0s")
	testkit.Eventually(t, 2*time.Minute, "the bad messages in the dead-letter queue", func() bool { return depth(t, q.DLQURL).Visible == bad })
	testkit.Eventually(t, time.Minute, "the queue empty", func() bool { d := depth(t, q.URL); return d.Visible+d.InFlight == 0 })
	m := w.scrape()
	w.stop(syscall.SIGTERM, time.Minute)

	calls, _, counts := e.snapshot()
	perBody := callsPerBody(calls)
	badCalls, good, wrong := 0, 0, 0
	for _, b := range sent {
		switch {
		case isBad(b):
			badCalls += perBody[b]
			if perBody[b] != maxReceives {
				wrong++
			}
		case counts[b] == 1 && perBody[b] == 1:
			good++
		}
	}
	t.Logf("figures: messages=%d bad=%d dlq=%d good_handled_once=%d bad_calls=%d (want %d) downstream_state_at_end=%.0f opened_lines=%d",
		n, bad, depth(t, q.DLQURL).Visible, good, badCalls, bad*maxReceives, m.Value("sqsworker_downstream_state"),
		strings.Count(w.Logs(), "downstream failing"))
	if good != n-bad {
		t.Errorf("%d good messages handled exactly once, want %d", good, n-bad)
	}
	if wrong != 0 {
		t.Errorf("%d bad messages were not called exactly %d times", wrong, maxReceives)
	}
	if strings.Contains(w.Logs(), "downstream failing") {
		t.Error("the breaker opened on failures that were the messages' own")
	}
}

// TestBackpressureFollowsTheDownstreamsCapacity: the downstream serves 8
// requests at once and answers 429 beyond that; the worker may run 64.
// Once it has found the limit, few calls are turned away, and nothing is
// spent from the messages' receives.
func TestBackpressureFollowsTheDownstreamsCapacity(t *testing.T) {
	const n, capacity, latency, settle = 6000, 8, 20 * time.Millisecond, 10 * time.Second
	q, sent := sendAll(t, "backpressure", n, sqstest.QueueOptions{MaxReceiveCount: 5})
	var running atomic.Int32
	work := takes(latency)
	e := newEndpoint(t, func(body string, h http.Header) int {
		// The slot is free before the answer is written: the worker may
		// send its next call as soon as it reads this one's.
		defer running.Add(-1)
		if running.Add(1) > capacity {
			return http.StatusTooManyRequests
		}
		return work(body, h)
	})
	w := startWorker(t, "--queue-url", q.URL, "--http-url", e.url(), "--concurrency", "64", "--wait-time", "1s")
	e.awaitAccepted(n, 3*time.Minute)
	testkit.Eventually(t, time.Minute, "the queue empty", func() bool { d := depth(t, q.URL); return d.Visible+d.InFlight == 0 })
	m := w.scrape()
	w.stop(syscall.SIGTERM, time.Minute)

	calls, _, counts := e.snapshot()
	lost, dup := countLostAndDuplicates(sent, counts)
	from := calls[0].at.Add(settle)
	total, refused, ok := 0, 0, 0
	var last time.Time
	for _, c := range calls {
		if c.at.Before(from) {
			continue
		}
		total++
		last = c.at
		switch c.status {
		case http.StatusTooManyRequests:
			refused++
		case http.StatusOK:
			ok++
		}
	}
	dlq := depth(t, q.DLQURL).Visible
	throughput := float64(ok) / last.Sub(from).Seconds()
	t.Logf("figures: messages=%d lost=%d duplicates=%d dlq=%d calls_after_10s=%d refused_429=%d (%.2f%%) "+
		"throughput=%.0f/s capacity=%.0f/s concurrency_limit_at_end=%.0f",
		n, lost, dup, dlq, total, refused, 100*float64(refused)/float64(total),
		throughput, capacity/latency.Seconds(), m.Value("sqsworker_concurrency_limit"))
	if total == 0 {
		t.Fatalf("no calls after the first %s: the run was too short to judge", settle)
	}
	if float64(refused) >= 0.05*float64(total) {
		t.Errorf("%d of %d calls after the first %s answered 429, want < 5%%", refused, total, settle)
	}
	if lost != 0 || dlq != 0 {
		t.Errorf("%d lost, %d in the dead-letter queue: want 0 and 0", lost, dlq)
	}
}

// TestMaxRateHoldsHandlerStarts: with a steady backlog, --max-rate 50
// starts 50 ± 5 handlers a second, counted by the downstream over 20s.
func TestMaxRateHoldsHandlerStarts(t *testing.T) {
	const n, rate, warmUp, window = 2000, 50, 5 * time.Second, 20 * time.Second
	q, _ := sendAll(t, "max-rate", n, sqstest.QueueOptions{})
	e := newEndpoint(t, nil)
	w := startBinary(t, plainWorkerBin(t), "--queue-url", q.URL, "--http-url", e.url(), "--max-rate", strconv.Itoa(rate), "--wait-time", "1s")
	e.awaitAccepted(1, time.Minute)
	calls, _, _ := e.snapshot()
	from := calls[0].at.Add(warmUp)
	to := from.Add(window)
	testkit.Eventually(t, 2*window, "a handler start after the window (else the backlog ran out: starts too fast)", func() bool {
		calls, _, _ = e.snapshot()
		return calls[len(calls)-1].at.After(to)
	})
	m := w.scrape()
	w.stop(syscall.SIGTERM, time.Minute)

	seconds := perSecond(calls, from, to)
	started := 0
	for _, c := range seconds {
		started += c
	}
	got := float64(started) / window.Seconds()
	t.Logf("figures: max_rate=%d starts_per_second=%.2f over %s per_second_min=%d per_second_max=%d rate_limit_waits=%.0f",
		rate, got, window, slices.Min(seconds), slices.Max(seconds), m.Value("sqsworker_rate_limit_waits_total"))
	if got < rate-5 || got > rate+5 {
		t.Errorf("%.2f handler starts a second over %s, want %d ± 5", got, window, rate)
	}
}

// TestFIFOOrderKeptThroughAnOutage: on a FIFO queue the downstream answers
// 503 from a fifth of the way until the breaker has opened and a while
// after. Every group is still handled in send order (the first success of
// each message), nothing is lost, nothing reaches the dead-letter queue.
func TestFIFOOrderKeptThroughAnOutage(t *testing.T) {
	t.Parallel()
	const groups, perGroup, maxReceives = 8, 60, 5
	q, sent := sendGroups(t, "outage-fifo", groups, perGroup, sqstest.QueueOptions{FIFO: true, MaxReceiveCount: maxReceives})
	e := newEndpoint(t, takes(10*time.Millisecond))
	w := startWorker(t, "--queue-url", q.URL, "--http-url", e.url(), "--wait-time", "1s")

	e.awaitAccepted(len(sent)/5, 2*time.Minute)
	e.fail(http.StatusServiceUnavailable)
	began := time.Now()
	testkit.Eventually(t, time.Minute, "the breaker open", func() bool { return w.scrape().Value("sqsworker_downstream_state") == 2 })
	opened := time.Since(began)
	faultLasts(5 * time.Second)
	e.fail(0)
	testkit.Eventually(t, time.Minute, "every message handled and the queue empty", func() bool {
		if e.distinct() < len(sent) {
			return false
		}
		d := depth(t, q.URL)
		return d.Visible+d.InFlight == 0
	})
	w.stop(syscall.SIGTERM, time.Minute)

	calls, accepted, counts := e.snapshot()
	lost, dup := countLostAndDuplicates(sent, counts)
	order := map[string][]int{} // group → sequence numbers, in order of first success
	for _, b := range accepted {
		seq, _ := strconv.Atoi(b[4:])
		order[b[:3]] = append(order[b[:3]], seq)
	}
	outOfOrder := countOutOfOrder(t, order)
	dlq := depth(t, q.DLQURL)
	refused := 0
	for _, c := range calls {
		if c.status == http.StatusServiceUnavailable {
			refused++
		}
	}
	retries, maxReceiveCount := checkBreakerLog(t, w.Logs())
	t.Logf("figures: groups=%d messages=%d lost=%d duplicates=%d dlq=%d out_of_order=%d calls_answered_503=%d breaker_open_after=%s "+
		"handed_back_to_sqs=%d highest_receive_count=%d of %d",
		groups, len(sent), lost, dup, dlq.Visible, outOfOrder, refused, opened.Round(100*time.Millisecond), retries, maxReceiveCount, maxReceives)
	if lost != 0 || dlq.Visible+dlq.InFlight != 0 {
		t.Errorf("%d lost, %d in the dead-letter queue: want 0 and 0", lost, dlq.Visible+dlq.InFlight)
	}
}
