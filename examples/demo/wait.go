package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// progress is one look at the queues and the handler.
type progress struct {
	queue, dlq sqstest.Depth
	handled    handled
}

func (p progress) done(poison int) bool {
	q := p.queue
	return q.Visible+q.InFlight+q.Delayed == 0 && p.dlq.Visible == poison
}

func (p progress) String() string {
	return fmt.Sprintf("handled %d ok, %d failed | queue %d visible, %d in flight | DLQ %d",
		p.handled.OK, p.handled.Failed, p.queue.Visible, p.queue.InFlight, p.dlq.Visible)
}

// timings are measured from the worker's start, to the nearest poll.
type timings struct {
	lastSuccess time.Duration // the handler had handled every good order
	done        time.Duration // the queue was empty and the DLQ full
}

// pollEvery is how often the demo looks at the queues and the handler.
const pollEvery = 50 * time.Millisecond

// waitUntilDone polls until the queue is empty and the DLQ holds every
// poison message, printing progress every second.
func (d *demo) waitUntilDone(ctx context.Context) (timings, error) {
	var t timings
	var p progress
	var stopped error // why the polling stopped before the queue was done
	lastPrint := time.Now()
	err := sqstest.Poll(ctx, d.o.timeout, pollEvery, "the queue to be done", func() bool {
		if d.worker.Exited() {
			stopped = fmt.Errorf("the worker exited early with status %d: %s", d.worker.ExitCode(), p)
			return true
		}
		next, err := d.look(ctx)
		if err != nil {
			if ctx.Err() == nil {
				stopped = err
			}
			return ctx.Err() == nil
		}
		p = next
		now := time.Since(d.worker.ReadyAt)
		if t.lastSuccess == 0 && p.handled.OK >= d.o.messages-d.o.poison {
			t.lastSuccess = now
		}
		if p.done(d.o.poison) {
			t.done = now
			step("%5.1fs  %s (done)", now.Seconds(), p)
			return true
		}
		if time.Since(lastPrint) >= time.Second {
			lastPrint = time.Now()
			step("%5.1fs  %s", now.Seconds(), p)
		}
		return false
	})
	switch {
	case stopped != nil:
		return t, stopped
	case errors.Is(err, context.Canceled):
		return t, fmt.Errorf("interrupted: %s", p)
	case err != nil:
		return t, fmt.Errorf("the queue was not done after %s: %s", d.o.timeout, p)
	}
	return t, nil
}

func (d *demo) look(ctx context.Context) (progress, error) {
	var p progress
	var err error
	if p.queue, err = d.server.QueueDepth(ctx, d.queue.URL); err != nil {
		return p, err
	}
	if p.dlq, err = d.server.QueueDepth(ctx, d.queue.DLQURL); err != nil {
		return p, err
	}
	if p.handled, err = handlerStats(ctx, d.handlerURL); err != nil {
		return p, err
	}
	return p, nil
}

// handled is the example handler's GET /stats.
type handled struct {
	OK     int `json:"ok"`
	Failed int `json:"failed"`
}

func handlerStats(ctx context.Context, url string) (handled, error) {
	var h handled
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/stats", nil)
	if err != nil {
		return h, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h, fmt.Errorf("read the handler's stats: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return h, fmt.Errorf("read the handler's stats: %w", err)
	}
	return h, nil
}
