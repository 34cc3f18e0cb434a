package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// backpressure's setting: eight times more handlers than the endpoint
// serves at once.
const (
	backpressureConcurrency = 64
	// backpressureCapacity requests at once, each held backpressureLatency,
	// is what the endpoint serves; it answers 429 to any request beyond.
	backpressureCapacity = 8
	backpressureLatency  = 20 * time.Millisecond
	// backpressureGoal is the least share of the endpoint's capacity the
	// worker must use once it has found the limit, and
	// backpressureMaxRejected the most share of its calls that may be
	// answered 429 by then.
	backpressureGoal        = 0.9
	backpressureMaxRejected = 0.05
	// backpressureHeadroom times what the endpoint can take in the whole
	// run is how many messages are queued: the queue never runs dry.
	backpressureHeadroom = 1.5
)

// backpressure runs backpressure: the worker binary at --concurrency 64,
// default flags otherwise (adaptive concurrency and the breaker on), in
// front of an HTTP endpoint that serves 8 requests at once in 20 ms each
// and answers 429 at once beyond that. After BackpressureWarmup (the
// adaptive limit finds the endpoint's capacity), it counts for
// BackpressureSpan what the endpoint answered: msg/s ÷ the endpoint's
// capacity (8 ÷ 20 ms), judged together with the share of calls that got
// a 429, since either alone is easy (ignore the 429s, or call one at a
// time).
func (e *env) backpressure(ctx context.Context) error {
	capacity := backpressureCapacity / backpressureLatency.Seconds()
	warmup, span := e.opts.BackpressureWarmup, e.opts.BackpressureSpan
	n := int(math.Ceil(capacity * (warmup + span).Seconds() * backpressureHeadroom))
	q, err := e.fill(ctx, "backpressure", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	h, err := e.startHandler(ctx, backpressureLatency, "--capacity", strconv.Itoa(backpressureCapacity))
	if err != nil {
		return err
	}
	defer h.stop()
	e.progress("%s: worker binary at concurrency %d, endpoint serving %d at once in %s and answering 429 beyond; warm-up %s, then %s measured",
		scenarioBackpressure, backpressureConcurrency, backpressureCapacity, backpressureLatency, warmup, span)
	p, err := e.startBinary(ctx, "--queue-url", q.URL, "--handler", "http", "--http-url", h.URL,
		"--concurrency", strconv.Itoa(backpressureConcurrency))
	if err != nil {
		return err
	}
	var (
		h0, h1 handlerStats
		m0, m1 sqstest.Metrics
		t0     time.Time
		seen   limitSamples
	)
	err = sleepCtx(ctx, warmup)
	if err == nil {
		h0, err = h.stats(ctx)
	}
	if err == nil {
		m0, err = p.Scrape(ctx)
	}
	if err == nil {
		t0 = time.Now()
		seen, err = p.sampleLimit(ctx, span, 250*time.Millisecond)
	}
	took := time.Since(t0)
	if err == nil {
		h1, err = h.stats(ctx)
	}
	if err == nil {
		m1, err = p.Scrape(ctx)
	}
	if err = firstErr(err, func() error { return p.stop(e.opts.WaitTime + time.Minute) }); err != nil {
		return err
	}

	served, rejected := float64(h1.Handled-h0.Handled), float64(h1.Rejected-h0.Rejected)
	if served+rejected == 0 {
		return fmt.Errorf("no call reached the endpoint in the %s after the warm-up", span)
	}
	share := rejected / (served + rejected)
	rate := served / took.Seconds()
	delta := func(name string, labels ...string) float64 {
		return m1.Value(name, labels...) - m0.Value(name, labels...)
	}
	e.note("%s's endpoint is the no-op handler with --capacity %d --hold %s: it serves %d requests at once and answers 429 at once (no Retry-After) to any beyond; "+
		"its capacity is %d ÷ %s = %s. Its counts are read when the warm-up ends and when the measured span does; msg/s is the requests it served over the span.",
		scenarioBackpressure, backpressureCapacity, backpressureLatency, backpressureCapacity, backpressureCapacity, backpressureLatency, format(capacity, "msg/s"))
	e.add(scenarioBackpressure, fmt.Sprintf("msg/s ÷ the endpoint's capacity, after the first %s", warmup), rate/capacity, "ratio",
		atLeast(backpressureGoal).andLimitBelow(backpressureMaxRejected, fmt.Sprintf("429s < %s", format(backpressureMaxRejected, "share"))),
		fmt.Sprintf("429s after the first %s: %s of %s calls (limit < %s); capacity %d ÷ %s = %s, served %s",
			warmup, format(share, "share"), thousands(served+rejected), format(backpressureMaxRejected, "share"),
			backpressureCapacity, backpressureLatency, format(capacity, "msg/s"), format(rate, "msg/s")),
		share,
		fmt.Sprintf("concurrency limit %.0f–%.0f (mean %.1f), at most %d open at the endpoint; downstream state at most %.0f, at most %.0f messages held; "+
			"the worker counted %s overloaded calls and %s deletes in the span; in the warm-up %s 429s of %s calls; "+
			"%s msgs queued, worker binary --concurrency %d, default flags otherwise, measured for %.1f s",
			seen.min, seen.max, seen.mean(), h1.Peak, seen.maxState, seen.maxHeld,
			thousands(delta("sqsworker_downstream_failures_total", "kind", "overloaded")), thousands(delta("sqsworker_messages_deleted_total")),
			thousands(float64(h0.Rejected)), thousands(float64(h0.Handled+h0.Rejected)),
			thousands(float64(n)), backpressureConcurrency, took.Seconds()))
	return nil
}

// limitSamples is what the worker's downstream gauges read during a span.
type limitSamples struct {
	n                 int
	min, max, sum     float64 // sqsworker_concurrency_limit
	maxState, maxHeld float64 // sqsworker_downstream_state, sqsworker_messages_held
}

func (s limitSamples) mean() float64 {
	if s.n == 0 {
		return 0
	}
	return s.sum / float64(s.n)
}

// sampleLimit scrapes the worker every interval for span and keeps what
// its concurrency limit, downstream state and held messages read.
func (p proc) sampleLimit(ctx context.Context, span, interval time.Duration) (limitSamples, error) {
	var s limitSamples
	end := time.NewTimer(span)
	defer end.Stop()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-end.C:
			return s, nil
		case <-ctx.Done():
			return s, ctx.Err()
		case <-t.C:
		}
		m, err := p.Scrape(ctx)
		if err != nil {
			return s, err
		}
		limit := m.Value("sqsworker_concurrency_limit")
		if s.n == 0 || limit < s.min {
			s.min = limit
		}
		s.n++
		s.max, s.sum = max(s.max, limit), s.sum+limit
		s.maxState = max(s.maxState, m.Value("sqsworker_downstream_state"))
		s.maxHeld = max(s.maxHeld, m.Value("sqsworker_messages_held"))
	}
}

// sleepCtx waits d, or returns ctx's error first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
