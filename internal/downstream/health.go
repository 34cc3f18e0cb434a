package downstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// probeHealth waits for the health URL to answer before the first
// receive, then probes it whenever the breaker is open.
func (g *Guard) probeHealth(ctx context.Context) {
	wait := g.cfg.ProbeInterval
	for !g.isReady() {
		err := g.checkHealth(ctx)
		if err == nil {
			g.mu.Lock()
			g.ready = true
			g.notifyLocked()
			g.mu.Unlock()
			g.log.Info("handler health URL answers; starting to receive")
			break
		}
		if wait == g.cfg.ProbeInterval {
			g.log.Info("waiting for the handler health URL before the first receive", zap.Error(err))
		}
		if !sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, g.cfg.MaxProbeInterval)
	}
	for {
		g.mu.Lock()
		changed := g.changedLocked()
		g.mu.Unlock()
		if g.state() == gobreaker.StateClosed {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		if !sleep(ctx, g.untilProbe()) {
			return
		}
		if g.state() != gobreaker.StateHalfOpen {
			continue
		}
		done, err := g.cb.Allow()
		if err != nil {
			continue
		}
		if err := g.checkHealth(ctx); err != nil {
			g.log.Debug("health probe failed", zap.Error(err))
			done(errDownstream)
			continue
		}
		done(nil)
	}
}

func (g *Guard) isReady() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ready
}

func (g *Guard) checkHealth(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.cfg.HealthURL, nil)
	if err != nil {
		return err
	}
	where := req.URL.Redacted() // never a password in a log line
	resp, err := g.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("health check %s: %w", where, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("health check %s: status %s", where, resp.Status)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
