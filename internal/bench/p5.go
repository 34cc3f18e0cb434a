package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// round is one heartbeat round seen from outside: a burst of extension
// batches, separated from the next by a quiet gap.
type round struct {
	start, last    time.Time
	batches, calls float64
}

// roundWatcher samples the heartbeat's batch counter and the
// ChangeMessageVisibilityBatch request counter and groups their increases
// into rounds. The worker has no metric of rounds (see the notes).
type roundWatcher struct {
	mu     sync.Mutex
	rounds []round
	stop   chan struct{}
	done   chan struct{}
}

func watchRounds(w *inproc, gap time.Duration) *roundWatcher {
	rw := &roundWatcher{stop: make(chan struct{}), done: make(chan struct{})}
	calls := func() float64 { return w.requests()["ChangeMessageVisibilityBatch"] }
	go func() {
		defer close(rw.done)
		lastB, lastC := counter(w.m.ExtensionBatches), calls()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-rw.stop:
				return
			case <-tick.C:
			}
			b, c := counter(w.m.ExtensionBatches), calls()
			if b == lastB && c == lastC {
				continue
			}
			now := time.Now()
			rw.mu.Lock()
			if n := len(rw.rounds); n == 0 || now.Sub(rw.rounds[n-1].last) > gap {
				rw.rounds = append(rw.rounds, round{start: now})
			}
			r := &rw.rounds[len(rw.rounds)-1]
			r.last, r.batches, r.calls = now, r.batches+b-lastB, r.calls+c-lastC
			rw.mu.Unlock()
			lastB, lastC = b, c
		}
	}()
	return rw
}

func (rw *roundWatcher) finish() []round {
	close(rw.stop)
	<-rw.done
	return rw.rounds
}

// p5 holds messages for several visibility timeouts and counts what the
// heartbeat costs: calls per round, and messages delivered again.
func (e *env) p5(ctx context.Context) error {
	n := e.opts.count(1000, 10)
	vt := e.opts.P5Visibility
	q, err := e.fill(ctx, "p5", sqstest.QueueOptions{VisibilityTimeout: int(vt / time.Second)}, indexBodies(n))
	if err != nil {
		return err
	}
	var started atomic.Int64
	allHeld, release := make(chan struct{}), make(chan struct{})
	h := handler.Func(func(ctx context.Context, _ *message.Message) error {
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
	stopProf, err := e.prof.start("P5")
	if err != nil {
		return err
	}
	hold := time.Duration(e.opts.P5Hold * float64(vt))
	e.progress("P5: %d messages held %s (%g × visibility timeout %s)", n, hold, e.opts.P5Hold, vt)
	w, err := e.startWorker(ctx, q.URL, h, func(c *config.Config) {
		c.Concurrency, c.Prefetch, c.VisibilityTimeout = n, 0, vt
	})
	if err != nil {
		return err
	}
	tick := min(vt/3, 10*time.Second) // visibility.Manager.Tick
	rw := watchRounds(w, tick/2)
	err = waitClosed(ctx, allHeld, 2*time.Minute, "every message held")
	var held, released time.Time
	if err == nil {
		held = time.Now()
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.Stop()
		released = time.Now()
		close(release)
	}
	if err == nil {
		err = w.waitDeleted(ctx, n, 2*time.Minute)
	}
	rounds := rw.finish()
	received, lost := counter(w.m.MessagesReceived), counter(w.m.LeasesLost)
	if serr := w.stop(); err == nil {
		err = serr
	}
	if perr := stopProf(); err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	e.note("P5: the worker has no metric of heartbeat rounds; a round here is a burst of " +
		"sqsworker_visibility_extension_batches_total separated from the next by half a tick, counted while every message was held.")
	var counted, calls, batches float64
	for _, r := range rounds {
		if !r.start.Before(held) && r.start.Before(released) {
			counted++
			calls += r.calls
			batches += r.batches
		}
	}
	perRound := math.NaN() // no round seen while every message was held
	if counted > 0 {
		perRound = calls / counted
	}
	floor := math.Ceil(float64(n) / 10)
	setting := fmt.Sprintf("%d messages held %.1f s, visibility timeout %s, heartbeat every %s", n, released.Sub(held).Seconds(), vt, tick)
	e.add("P5", "redeliveries while held", received-float64(n), "count", exactly(0),
		"0", 0, fmt.Sprintf("%.0f received for %d messages; %.0f leases lost", received, n, lost))
	e.add("P5", "ChangeMessageVisibilityBatch calls per heartbeat round", perRound, "calls/round", atMost(1.05*floor),
		fmt.Sprintf("⌈%d ÷ 10⌉ = %.0f", n, floor), floor,
		fmt.Sprintf("%.0f calls (%.0f batches) in %.0f rounds; %s", calls, batches, counted, setting))
	return nil
}
