// Package visibility owns the lease table: every message this worker holds,
// kept invisible by one heartbeat loop with batched
// ChangeMessageVisibilityBatch calls, and the visibility changes that end a
// lease early (retry after a delay, release at once).
package visibility

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
)

// ErrLeaseLost is the cause a handler's context is cancelled with when its
// message's lease is lost: the message may already be someone else's.
var ErrLeaseLost = errors.New("lease lost: the message's receipt handle is no longer valid")

// API is what visibility needs from SQS.
type API interface {
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// Defaults for Config.
const (
	DefaultMaxConcurrentBatches = 16
	DefaultRequestTimeout       = 10 * time.Second
)

// Config configures a Manager.
type Config struct {
	QueueURL string
	// VisibilityTimeout is the lease asked for on receive; the heartbeat
	// ticks a third of it. Required.
	VisibilityTimeout time.Duration
	// MaxExtension bounds one extension. Defaults to VisibilityTimeout.
	MaxExtension time.Duration
	// MaxProcessingTime stops extending a lease this long after it was
	// received. Defaults to 12h.
	MaxProcessingTime time.Duration
	// MaxConcurrentBatches bounds the extension calls in flight at once.
	// Defaults to 16.
	MaxConcurrentBatches int
	// RequestTimeout bounds one SQS call. Defaults to 10s.
	RequestTimeout time.Duration
	// OnRemove is called once for every lease, when it is removed from the
	// table or, earlier, when Handled says its handler is done with it;
	// fetch uses it to free room for new receives.
	OnRemove func()
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

type lease struct {
	msg          *message.Message
	visibleUntil time.Time
	hardLimit    time.Time
	cancel       context.CancelCauseFunc
	lost         bool
	handled      bool // OnRemove already called by Handled
}

// Manager is the lease table. Its methods are safe for concurrent use; the
// table is guarded by one mutex that no SQS call is made under.
type Manager struct {
	cfg     Config
	api     API
	log     *zap.Logger
	metrics *metrics.Metrics
	stats   *durations

	mu     sync.Mutex
	leases map[string]*lease

	retries retryBatcher
}

// New creates a Manager. Call Run to start the heartbeat.
func New(cfg Config, api API, log *zap.Logger, m *metrics.Metrics) *Manager {
	if cfg.MaxExtension < cfg.VisibilityTimeout {
		cfg.MaxExtension = cfg.VisibilityTimeout
	}
	if cfg.MaxProcessingTime <= 0 || cfg.MaxProcessingTime > maxVisibility {
		cfg.MaxProcessingTime = maxVisibility
	}
	if cfg.MaxConcurrentBatches <= 0 {
		cfg.MaxConcurrentBatches = DefaultMaxConcurrentBatches
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.OnRemove == nil {
		cfg.OnRemove = func() {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	mgr := &Manager{
		cfg: cfg, api: api, log: log.Named("visibility"), metrics: m,
		stats:  newDurations(),
		leases: make(map[string]*lease),
	}
	mgr.retries.m = mgr
	return mgr
}

const maxVisibility = 12 * time.Hour

// Add registers freshly received messages; each is invisible until its
// ReceivedAt plus the VisibilityTimeout asked for on receive.
func (m *Manager) Add(msgs ...*message.Message) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range msgs {
		if old, ok := m.leases[msg.ID]; ok {
			// Redelivered to us while we still held it: the old handle is
			// stale. Fence the old lease; the new one replaces it.
			m.loseLocked(old)
			if !old.handled {
				m.cfg.OnRemove()
			}
		}
		hard := msg.ReceivedAt.Add(m.cfg.MaxProcessingTime)
		if sqsLimit := msg.FirstReceivedAt.Add(maxVisibility); sqsLimit.Before(hard) {
			hard = sqsLimit
		}
		m.leases[msg.ID] = &lease{
			msg:          msg,
			visibleUntil: msg.ReceivedAt.Add(m.cfg.VisibilityTimeout),
			hardLimit:    hard,
		}
	}
	m.metrics.MessagesInFlight.Set(float64(len(m.leases)))
}

// Start attaches a handler's cancel function to msg's lease. It returns
// false when the lease is already lost: the handler must not run.
func (m *Manager) Start(msg *message.Message, cancel context.CancelCauseFunc) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[msg.ID]
	if !ok || l.msg != msg || !m.heldLocked(l) {
		return false
	}
	l.cancel = cancel
	return true
}

// Alive reports whether msg's lease is still held, so that its receipt
// handle may be used.
func (m *Manager) Alive(msg *message.Message) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[msg.ID]
	return ok && l.msg == msg && m.heldLocked(l)
}

// heldLocked reports whether l still holds its message: not lost, and not
// past its deadline (the heartbeat may not have noticed yet).
func (m *Manager) heldLocked(l *lease) bool {
	return !l.lost && m.cfg.Now().Before(l.visibleUntil)
}

// ObserveDuration feeds one handler duration into the adaptive extension.
func (m *Manager) ObserveDuration(d time.Duration) { m.stats.add(d) }

// Remove drops msg's lease: its delete was confirmed, its visibility was
// changed, or it was lost and its handler has finished.
func (m *Manager) Remove(msg *message.Message) {
	m.mu.Lock()
	l, ok := m.leases[msg.ID]
	if !ok || l.msg != msg {
		m.mu.Unlock()
		return
	}
	delete(m.leases, msg.ID)
	m.metrics.MessagesInFlight.Set(float64(len(m.leases)))
	m.mu.Unlock()
	if !l.handled {
		m.cfg.OnRemove()
	}
}

// Handled says msg's handler is done and its delete is queued: its room
// for new receives is freed now (OnRemove), while the lease stays, kept
// alive, until the delete is confirmed and Remove is called. Without this,
// leases awaiting their delete batch would starve the fetchers.
func (m *Manager) Handled(msg *message.Message) {
	m.mu.Lock()
	l, ok := m.leases[msg.ID]
	if !ok || l.msg != msg || l.handled {
		m.mu.Unlock()
		return
	}
	l.handled = true
	m.mu.Unlock()
	m.cfg.OnRemove()
}

// Len is the number of leases held.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.leases)
}

func (m *Manager) loseLocked(l *lease) {
	if l.lost {
		return
	}
	l.lost = true
	// A handled lease refused by SQS has, almost always, just been deleted
	// by the delete in flight: not a loss worth counting. If the delete
	// did not happen, it fails too and is counted as a delete failure.
	if !l.handled {
		m.metrics.LeasesLost.Inc()
	}
	if l.cancel != nil {
		l.cancel(ErrLeaseLost)
	}
}

// handled reports whether msg's lease is waiting for its delete.
func (m *Manager) handled(msg *message.Message) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[msg.ID]
	return ok && l.msg == msg && l.handled
}

// lose marks msg's lease lost, if msg still holds it.
func (m *Manager) lose(msg *message.Message) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[msg.ID]; ok && l.msg == msg {
		m.loseLocked(l)
	}
}
