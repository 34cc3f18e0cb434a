package visibility

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// Tick is how often the heartbeat looks for leases to extend: a third of
// the visibility timeout, so a lease is extended with at least a third of it
// left even when one call is slow.
func (t *Table) Tick() time.Duration {
	return min(t.cfg.VisibilityTimeout/3, maxTick)
}

// Extension is how long the next extension asks for: the p99 of measured
// handler time, within VisibilityTimeout … MaxExtension.
func (t *Table) Extension() time.Duration {
	ext := t.stats.p99()
	if ext < t.cfg.VisibilityTimeout {
		ext = t.cfg.VisibilityTimeout
	}
	if ext > t.cfg.MaxExtension {
		ext = t.cfg.MaxExtension
	}
	return ext.Round(time.Second)
}

// Start launches the heartbeat, which extends due leases every Tick, and
// the sender of visibility changes. They run until Stop.
func (t *Table) Start(ctx context.Context) error {
	if err := t.BeginStart(); err != nil {
		return err
	}
	if err := t.changes.Start(ctx); err != nil {
		return err
	}
	hbCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	t.stopHeartbeat = stop
	go func() {
		defer close(t.heartbeatDone)
		tick := time.NewTicker(t.Tick())
		defer tick.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-tick.C:
				t.Heartbeat(hbCtx)
			}
		}
	}()
	return nil
}

// Stop ends the heartbeat (a round under way is cut short), then waits for
// the visibility changes in flight, or for ctx to be done. Leases still
// held are left to expire. Stopping twice, or before Start, is harmless.
func (t *Table) Stop(ctx context.Context) error {
	first, running := t.BeginStop()
	if !running {
		return nil
	}
	if first {
		t.stopHeartbeat()
		<-t.heartbeatDone
		err := t.changes.Stop(ctx)
		t.Stopped()
		return err
	}
	return t.Wait(ctx)
}

// maxTick bounds Tick: a long visibility timeout still has its leases
// looked at every few seconds.
const maxTick = 10 * time.Second

// heartbeatGrace is added to the horizon for the round's own latency: a
// round of many batches on a busy machine can take most of a second.
const heartbeatGrace = time.Second

// Heartbeat runs one round: leases that expire within two ticks (plus a
// grace for the round's own latency) are extended, the most urgent first,
// each to its call's send time plus the extension (so leases extended
// together stay due together, and later rounds fill their batches);
// leases past their deadline are lost.
func (t *Table) Heartbeat(ctx context.Context) {
	now := t.cfg.Now()
	horizon := now.Add(2*t.Tick() + heartbeatGrace)
	ext := t.Extension()
	t.metrics.ExtensionSeconds.Set(ext.Seconds())

	type dueLease struct {
		msg   *message.Message
		until time.Time
		ext   time.Duration
	}
	var dues []dueLease
	t.mu.Lock()
	for _, l := range t.leases {
		switch {
		case l.lost:
		case !l.visibleUntil.After(now):
			t.log.Warn("lease expired before it could be extended; the message may be redelivered",
				zap.String("message_id", l.msg.ID), zap.Time("visible_until", l.visibleUntil))
			t.loseLocked(l)
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
	t.mu.Unlock()
	if len(dues) == 0 {
		return
	}
	t.metrics.HeartbeatRounds.Inc()
	// The most urgent first: when a round of many batches runs long (a
	// busy machine, a slow SQS), the leases closest to expiry are not the
	// ones left waiting in its last calls.
	slices.SortFunc(dues, func(a, b dueLease) int { return a.until.Compare(b.until) })
	entries := make([]batch.Entry, len(dues))
	for i, d := range dues {
		entries[i] = batch.Entry{Msg: d.msg, Visibility: d.ext, Done: t.extended}
	}
	t.changes.SendWith(ctx, t.extendVisibility, entries)
}

// extended records what became of one extension.
func (t *Table) extended(e batch.Entry, r batch.Result) {
	msg := e.Msg
	switch r.Outcome {
	case batch.Applied:
		t.mu.Lock()
		if l, ok := t.leases[msg.ID]; ok && l.msg == msg {
			// SQS counts the new timeout from when it got the call.
			l.visibleUntil = r.SentAt.Add(e.Visibility)
		}
		t.mu.Unlock()
		t.metrics.VisibilityExtensions.Inc()
	case batch.Refused:
		if sqsapi.IsHandleGone(r.Code) {
			deleting := t.handled(msg)
			t.lose(msg)
			if !deleting { // else its delete got there first
				t.log.Warn("change visibility refused: the receipt handle is no longer valid; the lease is lost, "+
					"so the handler is cancelled and the message will not be deleted with this handle",
					zap.String("message_id", msg.ID), zap.String("error_code", r.Detail))
			}
			return
		}
		t.log.Warn("change visibility entry failed; the message keeps its current deadline",
			zap.String("message_id", msg.ID), zap.String("error_code", r.Detail))
	case batch.Abandoned:
		t.log.Warn("change visibility failed; the message keeps its current deadline",
			zap.String("message_id", msg.ID), zap.Error(r.Err))
	}
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
