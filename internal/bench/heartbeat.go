package bench

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// heartbeat holds messages for several visibility timeouts and counts what the
// heartbeat costs: calls per round, and messages delivered again.
func (e *env) heartbeat(ctx context.Context) error {
	n := e.opts.count(1000, 10)
	vt := e.opts.HeartbeatVisibility
	q, err := e.fill(ctx, "heartbeat", sqstest.QueueOptions{VisibilityTimeout: int(vt / time.Second)}, indexBodies(n))
	if err != nil {
		return err
	}
	var started atomic.Int64
	allHeld, release := make(chan struct{}), make(chan struct{})
	h := sqsworker.HandlerFunc(func(ctx context.Context, _ *sqsworker.Message) error {
		if started.Add(1) == int64(n) {
			close(allHeld)
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	stopProf, err := e.prof.start(scenarioHeartbeat)
	if err != nil {
		return err
	}
	hold := time.Duration(e.opts.HeartbeatHold * float64(vt))
	e.progress("%s: %d messages held %s (%g × visibility timeout %s)", scenarioHeartbeat, n, hold, e.opts.HeartbeatHold, vt)
	w, err := e.startWorker(ctx, q.URL, h, func(c *sqsworker.Config) {
		c.Concurrency, c.Prefetch, c.VisibilityTimeout = n, -1, vt
	})
	if err != nil {
		return err
	}
	tick := min(vt/3, 10*time.Second) // visibility.Table.Tick
	calls := func() float64 { return w.requests()["ChangeMessageVisibilityBatch"] }
	err = waitClosed(ctx, allHeld, 2*time.Minute, "every message held")
	var held, released time.Time
	var rounds0, calls0, rounds1, calls1, batches0, batches1 float64
	if err == nil {
		held = time.Now()
		rounds0, calls0, batches0 = w.count("sqsworker_heartbeat_rounds_total"), calls(), w.count("sqsworker_visibility_extension_batches_total")
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.Stop()
		released = time.Now()
		rounds1, calls1, batches1 = w.count("sqsworker_heartbeat_rounds_total"), calls(), w.count("sqsworker_visibility_extension_batches_total")
		close(release)
	}
	if err == nil {
		err = w.waitDeleted(ctx, n, 2*time.Minute)
	}
	received, lost := w.count("sqsworker_messages_received_total"), w.count("sqsworker_leases_lost_total")
	if err := firstErr(err, w.stop, stopProf); err != nil {
		return err
	}
	counted := rounds1 - rounds0
	perRound := math.NaN() // no round seen while every message was held
	if counted > 0 {
		perRound = (calls1 - calls0) / counted
	}
	floor := math.Ceil(float64(n) / 10)
	setting := fmt.Sprintf("%d messages held %.1f s, visibility timeout %s, heartbeat every %s", n, released.Sub(held).Seconds(), vt, tick)
	e.add(scenarioHeartbeat, "redeliveries while held", received-float64(n), "count", exactly(0),
		"0 (every lease kept alive while held)", 0, fmt.Sprintf("%.0f received for %d messages; %.0f leases lost", received, n, lost))
	e.add(scenarioHeartbeat, "ChangeMessageVisibilityBatch calls per heartbeat round", perRound, "calls/round", atMost(1.05*floor),
		fmt.Sprintf("⌈%d ÷ 10⌉ = %.0f", n, floor), floor,
		fmt.Sprintf("%.0f calls (%.0f batches) in %.0f rounds (sqsworker_heartbeat_rounds_total); %s",
			calls1-calls0, batches1-batches0, counted, setting))
	return nil
}
