package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// replicaScaling runs replica-scaling: the worker binary as one replica,
// then as three on one queue, each at --concurrency 8 before a handler that
// holds every request 20 ms, so that a replica's rate is set by its
// handlers (8 ÷ 20 ms = 400 msg/s), not by the machine's cores. Three
// replicas should take three times the messages in the same time.
func (e *env) replicaScaling(ctx context.Context) error {
	const replicas, concurrency, hold = 3, 8, 20 * time.Millisecond
	n := e.opts.count(4000, 60)
	h, err := e.startHandler(ctx, hold)
	if err != nil {
		return err
	}
	defer h.stop()
	rate := func(count int) (float64, error) {
		q, err := e.fill(ctx, scenarioReplicas, sqstest.QueueOptions{}, indexBodies(n*count))
		if err != nil {
			return 0, err
		}
		e.progress("%s: %d replica(s) consume %d messages (handler holds each %s, concurrency %d each)", scenarioReplicas, count, n*count, hold, concurrency)
		var procs []proc
		defer func() {
			for _, p := range procs {
				err = errors.Join(err, p.stop(e.opts.WaitTime+time.Minute))
			}
		}()
		for range count {
			p, err := e.startBinary(ctx, "--queue-url", q.URL, "--handler", "http", "--http-url", h.URL, "--concurrency", fmt.Sprint(concurrency))
			if err != nil {
				return 0, err
			}
			procs = append(procs, p)
		}
		t0 := time.Now()
		err = sqstest.Poll(ctx, 10*time.Minute, 20*time.Millisecond, "the queue empty", func() bool {
			d, derr := e.srv.QueueDepth(ctx, q.URL)
			return derr == nil && d.Visible+d.InFlight == 0
		})
		return float64(n*count) / time.Since(t0).Seconds(), err
	}
	one, err := rate(1)
	if err != nil {
		return err
	}
	three, err := rate(replicas)
	if err != nil {
		return err
	}
	limit := float64(concurrency) / hold.Seconds()
	e.add(scenarioReplicas, "throughput of 3 replicas ÷ 1 replica", three/one, "ratio", atLeast(2.7),
		fmt.Sprintf("1 replica %s (handler-bound limit %s each)", format(one, "msg/s"), format(limit, "msg/s")), one,
		fmt.Sprintf("3 replicas %s; %s msgs per replica, concurrency %d each, handler %s", format(three, "msg/s"), thousands(float64(n)), concurrency, hold))
	return nil
}
