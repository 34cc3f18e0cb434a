package visibility

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
)

// Tick is how often the heartbeat looks for leases to extend: a third of
// the visibility timeout, so a lease is extended with at least a third of it
// left even when one call is slow.
func (m *Manager) Tick() time.Duration {
	t := m.cfg.VisibilityTimeout / 3
	if t > 10*time.Second {
		t = 10 * time.Second
	}
	return t
}

// Extension is how long the next extension asks for: the p99 of measured
// handler time, within VisibilityTimeout … MaxExtension.
func (m *Manager) Extension() time.Duration {
	ext := m.stats.p99()
	if ext < m.cfg.VisibilityTimeout {
		ext = m.cfg.VisibilityTimeout
	}
	if ext > m.cfg.MaxExtension {
		ext = m.cfg.MaxExtension
	}
	return ext.Round(time.Second)
}

// Run extends due leases every Tick until ctx is done. Stop it last: after
// the final delete flush, since a lease stays registered until its delete
// is confirmed.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.Tick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.Heartbeat(ctx)
		}
	}
}

// heartbeatGrace is added to the horizon for the round's own latency: a
// round of many batches on a busy machine can take most of a second.
const heartbeatGrace = time.Second

// Heartbeat runs one round: leases that expire within two ticks (plus a
// grace for the round's own latency) are extended, the most urgent first,
// each to its call's send time plus the extension (so leases extended
// together stay due together, and later rounds fill their batches);
// leases past their deadline are lost.
func (m *Manager) Heartbeat(ctx context.Context) {
	now := m.cfg.Now()
	horizon := now.Add(2*m.Tick() + heartbeatGrace)
	ext := m.Extension()
	m.metrics.ExtensionSeconds.Set(ext.Seconds())

	type dueLease struct {
		msg   *message.Message
		until time.Time
		ext   time.Duration
	}
	var dues []dueLease
	m.mu.Lock()
	for _, l := range m.leases {
		switch {
		case l.lost:
		case !l.visibleUntil.After(now):
			m.log.Warn("lease expired before it could be extended; the message may be redelivered",
				zap.String("message_id", l.msg.ID), zap.Time("visible_until", l.visibleUntil))
			m.loseLocked(l)
		case l.visibleUntil.Before(horizon):
			left := l.hardLimit.Sub(now)
			if left <= 0 || !l.hardLimit.After(l.visibleUntil) {
				continue // at its limit: let it expire, then it is lost
			}
			d := ext
			if d > left {
				d = left
			}
			dues = append(dues, dueLease{l.msg, l.visibleUntil, d})
		}
	}
	m.mu.Unlock()
	if len(dues) == 0 {
		return
	}
	m.metrics.HeartbeatRounds.Inc()
	// The most urgent first: when a round of many batches runs long (a
	// busy machine, a slow SQS), the leases closest to expiry are not the
	// ones left waiting in its last calls.
	slices.SortFunc(dues, func(a, b dueLease) int { return a.until.Compare(b.until) })
	due := make([]*message.Message, len(dues))
	timeouts := make([]time.Duration, len(dues))
	for i, d := range dues {
		due[i], timeouts[i] = d.msg, d.ext
	}
	m.change(ctx, due, timeouts, true, func(msg *message.Message, until time.Time) {
		m.mu.Lock()
		if l, ok := m.leases[msg.ID]; ok && l.msg == msg {
			l.visibleUntil = until
		}
		m.mu.Unlock()
		m.metrics.VisibilityExtensions.Inc()
	}, m.lose)
}

// durations keeps recent handler durations in one-second buckets, as
// Pub/Sub's client does, so that the p99 costs a bounded scan.
type durations struct {
	mu      sync.Mutex
	buckets []int // buckets[i] counts durations in [i s, i+1 s)
	n       int
	cache   time.Duration
	dirty   bool
}

const maxDurationBucket = 3600

func newDurations() *durations { return &durations{buckets: make([]int, maxDurationBucket+1)} }

func (d *durations) add(x time.Duration) {
	i := int(x / time.Second)
	if i > maxDurationBucket {
		i = maxDurationBucket
	}
	if i < 0 {
		i = 0
	}
	d.mu.Lock()
	d.buckets[i]++
	d.n++
	d.dirty = true
	d.mu.Unlock()
}

func (d *durations) p99() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.dirty {
		return d.cache
	}
	d.dirty = false
	if d.n == 0 {
		return 0
	}
	want := (d.n*99 + 99) / 100
	seen := 0
	i := 0
	for ; i < len(d.buckets); i++ {
		seen += d.buckets[i]
		if seen >= want {
			break
		}
	}
	d.cache = time.Duration(i+1) * time.Second
	return d.cache
}
