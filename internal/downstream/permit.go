package downstream

import (
	"context"
	"time"
)

// Limit is the number of handlers that may run at once now.
func (g *Guard) Limit() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return int(g.limit)
}

// Permit is one handler start. Done must be called once the call ended.
type Permit struct {
	g     *Guard
	done  func(error) // the breaker's; nil without one
	start time.Time
}

// take claims room under the concurrency limit and the breaker's leave.
func (g *Guard) take() (*Permit, bool) {
	g.mu.Lock()
	if g.inflight >= max(int(g.limit), 1) {
		g.mu.Unlock()
		return nil, false
	}
	g.inflight++
	g.mu.Unlock()
	p := &Permit{g: g, start: g.cfg.Now()}
	if g.cb != nil {
		done, err := g.cb.Allow()
		if err != nil { // opened meanwhile
			g.release()
			return nil, false
		}
		p.done = done
	}
	return p, true
}

func (g *Guard) release() {
	g.mu.Lock()
	g.inflight--
	g.notifyLocked()
	g.mu.Unlock()
}

// waitRate waits for the rate limit's grant of a start; a wait that is cut
// short gives the permit back.
func (g *Guard) waitRate(ctx context.Context, stop <-chan struct{}, p *Permit) error {
	if g.rate == nil {
		return nil
	}
	r := g.rate.ReserveN(g.cfg.Now(), 1)
	d := r.DelayFrom(g.cfg.Now())
	if d <= 0 {
		return nil
	}
	g.m.RateLimitWaits.Inc()
	t := time.NewTimer(d)
	defer t.Stop()
	var err error
	select {
	case <-t.C:
		p.start = g.cfg.Now()
		return nil
	case <-stop:
		err = ErrStopped
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	r.Cancel()
	p.Done(Ignored)
	return err
}

// Done reports how the call went. It returns whether the message should
// be held rather than handed back to SQS: the call failed for the
// downstream's reasons and the breaker now holds the downstream as
// failing.
func (p *Permit) Done(k Kind) (hold bool) {
	g := p.g
	now := g.cfg.Now()
	took := now.Sub(p.start)
	g.mu.Lock()
	g.inflight--
	atFloor := g.limit <= 1
	g.adjustLocked(k, p.start, now, took)
	g.notifyLocked()
	g.mu.Unlock()

	if k.Downstream() {
		g.m.DownstreamFailures.WithLabelValues(k.String()).Inc()
	}
	if p.done != nil {
		switch {
		case k == Ignored:
			p.done(errIgnored)
		// An overloaded answer is the downstream asking for fewer calls,
		// which the limit gives it; only when even one call at a time is
		// too many (or the limit is pinned) is it a failure.
		case k == Unavailable, k == Overloaded && (atFloor || g.cfg.DisableAdaptive):
			p.done(errDownstream)
		case k == Overloaded:
			p.done(errIgnored)
		default:
			p.done(nil)
		}
	}
	return k.Downstream() && g.Failing()
}

// adjustLocked moves the concurrency limit: cut by a tenth (at most once
// per round of calls: only a call started after the last cut cuts again)
// when the downstream failed or asked to slow down; raised after a success
// at a stable latency, by one per success below ssthresh (a ramp that
// doubles each round), by a quarter per round above it.
func (g *Guard) adjustLocked(k Kind, start, now time.Time, took time.Duration) {
	if g.cfg.DisableAdaptive {
		return
	}
	before := g.limit
	switch {
	case k.Downstream():
		if start.Before(g.lastCut) {
			return
		}
		g.limit = max(1, float64(int(g.limit*0.9)))
		g.ssthresh, g.lastCut = g.limit, now
	case k == Succeeded, k == MessageFailed:
		secs := took.Seconds()
		// Stable: within twice the usual latency (and 5ms, for calls so
		// quick that scheduling noise dwarfs them).
		stable := g.latency == 0 || secs <= max(2*g.latency, g.latency+0.005)
		g.latency = ewma(g.latency, secs)
		if !stable {
			return
		}
		if g.limit < g.ssthresh {
			g.limit++
		} else {
			g.limit += 0.25 / g.limit
		}
		g.limit = min(g.limit, float64(g.cfg.Concurrency))
	}
	if g.limit != before {
		g.m.ConcurrencyLimit.Set(float64(int(g.limit)))
	}
}

func ewma(avg, x float64) float64 {
	if avg == 0 {
		return x
	}
	return avg + (x-avg)/20
}
