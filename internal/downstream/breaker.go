package downstream

import (
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// readyToTrip: MinFailures downstream failures in a row, or at least
// MinFailures that are FailureRate of the calls ended within the window
// (the successes just before an outage stay in the window for a while).
func (g *Guard) readyToTrip(c gobreaker.Counts) bool {
	if int(c.ConsecutiveFailures) >= g.cfg.MinFailures {
		return true
	}
	ended := c.TotalSuccesses + c.TotalFailures
	return int(c.TotalFailures) >= g.cfg.MinFailures && float64(c.TotalFailures) >= g.cfg.FailureRate*float64(ended)
}

// stateChanged runs under the breaker's mutex: it must not call the
// breaker.
func (g *Guard) stateChanged(_ string, from, to gobreaker.State) {
	now := g.cfg.Now()
	g.mu.Lock()
	switch to {
	case gobreaker.StateOpen:
		g.opens++
		wait := g.cfg.ProbeInterval << min(g.opens-1, 20)
		g.probeAt = now.Add(min(wait, g.cfg.MaxProbeInterval))
	case gobreaker.StateClosed:
		g.opens = 0
		// Ramp back up from one handler, doubling while calls succeed,
		// rather than send the whole backlog at once.
		if !g.cfg.DisableAdaptive {
			g.limit, g.ssthresh = 1, float64(g.cfg.Concurrency)
			g.m.ConcurrencyLimit.Set(g.limit)
		}
	}
	probeAt, held := g.probeAt, g.held
	g.notifyLocked()
	g.mu.Unlock()

	g.m.DownstreamState.Set(stateValue(to))
	switch {
	case to == gobreaker.StateOpen && from == gobreaker.StateClosed:
		g.log.Info("downstream failing: holding the messages in hand and pausing receives; will probe it",
			zap.Time("next_probe_at", probeAt), zap.Int("held", held))
	case to == gobreaker.StateOpen:
		g.log.Debug("probe failed; downstream still failing", zap.Time("next_probe_at", probeAt))
	case to == gobreaker.StateClosed:
		g.log.Info("downstream recovered: resuming receives, ramping concurrency back up",
			zap.Int("held", held), zap.Int("max_concurrency", g.cfg.Concurrency))
	}
}

// stateValue is sqsworker_downstream_state's value for a breaker state.
func stateValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	default:
		return 0
	}
}

func (g *Guard) state() gobreaker.State {
	if g.cb == nil {
		return gobreaker.StateClosed
	}
	return g.cb.State()
}

// Failing reports whether the breaker holds the downstream as failing.
func (g *Guard) Failing() bool { return g.state() != gobreaker.StateClosed }
