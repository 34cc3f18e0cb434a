package downstream

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/startstop"
)

// Defaults for Config.
const (
	DefaultFailureRate      = 0.5
	DefaultMinFailures      = 10
	DefaultWindow           = 10 * time.Second
	DefaultProbeInterval    = time.Second
	DefaultMaxProbeInterval = 15 * time.Second
	DefaultHealthTimeout    = 5 * time.Second
)

// Config configures a Guard. Its zero value, but for Concurrency, is the
// documented default: breaker and adaptive limit on, no rate limit.
type Config struct {
	// Concurrency is the most handlers that may run at once: the ceiling
	// of the adaptive limit. Required.
	Concurrency int

	// DisableBreaker turns the circuit breaker off: every failure is the
	// message's, and messages are never held.
	DisableBreaker bool
	// FailureRate and MinFailures are the breaker's rule: it opens after
	// MinFailures handler calls in a row failed for the downstream's
	// reasons, or when, within Window, at least MinFailures did and they
	// were at least FailureRate of the calls that ended. Failures of the message's own (a 500, a non-zero exit)
	// count as calls the downstream answered. Default to 0.5, 10 and 10s.
	FailureRate float64
	MinFailures int
	Window      time.Duration
	// ProbeInterval is the wait before the first probe after the breaker
	// opens; it doubles after each failed probe up to MaxProbeInterval.
	// Default to 1s and 15s.
	ProbeInterval    time.Duration
	MaxProbeInterval time.Duration
	// HealthURL, when set, is probed (GET, 2xx is healthy) instead of
	// sending a held message, and must answer before the first receive.
	HealthURL string
	// HealthTimeout bounds one health request. Defaults to 5s.
	HealthTimeout time.Duration

	// DisableAdaptive pins the concurrency limit at Concurrency. Otherwise
	// the limit is cut by a tenth whenever the downstream asks to slow
	// down or fails, and raised again while calls succeed at a stable
	// latency (additive increase, multiplicative decrease).
	DisableAdaptive bool

	// MaxRate, when positive, is the most handler starts per second, with
	// bursts of up to MaxRateBurst (defaults to 1).
	MaxRate      float64
	MaxRateBurst int

	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.FailureRate <= 0 {
		c.FailureRate = DefaultFailureRate
	}
	if c.MinFailures <= 0 {
		c.MinFailures = DefaultMinFailures
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.MaxProbeInterval < c.ProbeInterval {
		c.MaxProbeInterval = max(DefaultMaxProbeInterval, c.ProbeInterval)
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	if c.MaxRateBurst <= 0 {
		c.MaxRateBurst = 1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// ErrStopped is returned by Acquire when the stop channel closed first.
var ErrStopped = errors.New("stopping")

// errDownstream and errIgnored are what the breaker is told of a call.
var (
	errDownstream = errors.New("downstream failed")
	errIgnored    = errors.New("ignored")
)

// Guard is the gate between received messages and handlers. Its methods
// are safe for concurrent use. One mutex guards its own state; the breaker
// has its own, and the guard never calls the breaker while holding its
// mutex (the breaker calls back into the guard holding its).
type Guard struct {
	startstop.Lifecycle
	cfg    Config
	log    *zap.Logger
	m      *metrics.Metrics
	cb     *gobreaker.TwoStepCircuitBreaker[struct{}] // nil without a breaker
	rate   *rate.Limiter                              // nil without a rate limit
	client *http.Client                               // health probes

	mu       sync.Mutex
	changed  chan struct{} // closed when a waiter may go on; nil while nobody waits (changedLocked)
	limit    float64       // handlers that may run at once now
	ssthresh float64       // below it the limit grows by one per success
	inflight int
	lastCut  time.Time // calls started before it do not cut the limit again
	latency  float64   // moving average of successful calls, seconds
	opens    int       // failed probes since the breaker last closed
	probeAt  time.Time // when the next probe may start
	held     int       // Acquire calls waiting because the breaker is open
	ready    bool      // the health URL answered once (or none is set)
	stop     context.CancelFunc
	probing  sync.WaitGroup
}

// New creates a Guard; Start it to run the health probes.
func New(cfg Config, log *zap.Logger, m *metrics.Metrics) *Guard {
	cfg.setDefaults()
	g := &Guard{
		cfg: cfg, log: log.Named("downstream"), m: m,
		limit: float64(cfg.Concurrency), ssthresh: float64(cfg.Concurrency),
		ready:  cfg.HealthURL == "",
		client: &http.Client{Timeout: cfg.HealthTimeout},
	}
	if !cfg.DisableBreaker {
		g.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        "downstream",
			MaxRequests: 1,
			Interval:    cfg.Window,
			// A rolling window: old outcomes leave it a tenth at a time.
			BucketPeriod: cfg.Window / 10,
			// The guard schedules probes itself (probeAt, with backoff);
			// the breaker only has to be half-open by the first one.
			Timeout:       cfg.ProbeInterval,
			ReadyToTrip:   g.readyToTrip,
			OnStateChange: g.stateChanged,
			IsExcluded:    func(err error) bool { return errors.Is(err, errIgnored) },
		})
	}
	if cfg.MaxRate > 0 {
		g.rate = rate.NewLimiter(rate.Limit(cfg.MaxRate), cfg.MaxRateBurst)
	}
	m.ConcurrencyLimit.Set(g.limit)
	m.DownstreamState.Set(0)
	return g
}

func (g *Guard) notifyLocked() {
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

// changedLocked is the channel notifyLocked closes next, made when a
// waiter first asks for it: a handler's Done costs no channel while
// nobody waits.
func (g *Guard) changedLocked() chan struct{} {
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return g.changed
}

// Start runs the health probes when a health URL is set.
func (g *Guard) Start(ctx context.Context) error {
	if err := g.BeginStart(); err != nil {
		return err
	}
	ctx, g.stop = context.WithCancel(ctx)
	if g.cfg.HealthURL != "" {
		g.probing.Add(1)
		go func() {
			defer g.probing.Done()
			g.probeHealth(ctx)
		}()
	}
	return nil
}

// Stop ends the health probes. Stopping twice, or before Start, is
// harmless.
func (g *Guard) Stop(context.Context) error {
	if _, running := g.BeginStop(); !running {
		return nil
	}
	g.stop()
	g.probing.Wait()
	g.Stopped()
	return nil
}

// Acquire waits until a handler may start: the breaker lets calls through
// (or this one is the probe), the concurrency limit has room, and the rate
// limit grants a start. While the breaker is open the caller is counted as
// holding its message. It returns ErrStopped when stop closes first, or
// ctx's error.
func (g *Guard) Acquire(ctx context.Context, stop <-chan struct{}) (*Permit, error) {
	// The common case first, without the channel a wait needs: the
	// breaker closed and room under the limit.
	if g.state() == gobreaker.StateClosed {
		if p, ok := g.take(); ok {
			if err := g.waitRate(ctx, stop, p); err != nil {
				return nil, err
			}
			return p, nil
		}
	}
	holding := false
	defer func() {
		if holding {
			g.setHeld(-1)
		}
	}()
	for {
		g.mu.Lock()
		changed := g.changedLocked()
		g.mu.Unlock()
		var timeout time.Duration
		switch st := g.state(); st {
		case gobreaker.StateClosed:
			if holding {
				holding = false
				g.setHeld(-1)
			}
			if p, ok := g.take(); ok {
				if err := g.waitRate(ctx, stop, p); err != nil {
					return nil, err
				}
				return p, nil
			}
		default:
			if !holding {
				holding = true
				g.setHeld(+1)
			}
			untilProbe := g.untilProbe()
			if untilProbe <= 0 && st == gobreaker.StateHalfOpen && g.cfg.HealthURL == "" {
				if done, err := g.cb.Allow(); err == nil {
					g.mu.Lock()
					g.inflight++
					g.mu.Unlock()
					g.log.Debug("probing the downstream with a held message")
					return &Permit{g: g, done: done, start: g.cfg.Now()}, nil
				}
			}
			timeout = untilProbe
		}
		if err := wait(ctx, stop, changed, timeout); err != nil {
			return nil, err
		}
	}
}

// wait returns when changed closes or timeout (if positive) passes, or
// with ErrStopped or ctx's error.
func wait(ctx context.Context, stop <-chan struct{}, changed <-chan struct{}, timeout time.Duration) error {
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-changed:
	case <-timer:
	case <-stop:
		return ErrStopped
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
}

func (g *Guard) untilProbe() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.probeAt.Sub(g.cfg.Now())
}

func (g *Guard) setHeld(d int) {
	g.mu.Lock()
	g.held += d
	held := g.held
	if d < 0 {
		g.notifyLocked() // a fetcher may wait for no message to be held
	}
	g.mu.Unlock()
	g.m.MessagesHeld.Set(float64(held))
}

// WaitReceive blocks a fetcher while it should not receive: until the
// health URL has answered once, and while the breaker is open and
// messages are held (or a health URL does the probing). With nothing held
// and the probe due, a receive is let through so that a received message
// can be the probe.
func (g *Guard) WaitReceive(ctx context.Context) error {
	g.mu.Lock()
	ready := g.ready
	g.mu.Unlock()
	if ready && g.state() == gobreaker.StateClosed {
		return nil // the common case, without the channel a wait needs
	}
	for {
		g.mu.Lock()
		changed, ready, held := g.changedLocked(), g.ready, g.held
		g.mu.Unlock()
		var timeout time.Duration
		if ready {
			if g.state() == gobreaker.StateClosed {
				return nil
			}
			timeout = g.untilProbe()
			if held == 0 && g.cfg.HealthURL == "" && timeout <= 0 {
				return nil
			}
		}
		if err := wait(ctx, nil, changed, timeout); err != nil {
			return err
		}
	}
}
