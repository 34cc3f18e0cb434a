// Package visibility owns the lease table: every message this worker holds and
// the room for more (the in-flight limit), kept invisible by one heartbeat
// loop with batched ChangeMessageVisibilityBatch calls, and the visibility
// changes that end a lease early (retry after a delay, release at once).
package visibility

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/startstop"
)

// ErrLeaseLost is the cause a handler's context is cancelled with when its
// message's lease is lost: the message may already be someone else's.
var ErrLeaseLost = errors.New("lease lost: the message's receipt handle is no longer valid")

// API is what the lease table needs from SQS.
type API interface {
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// DefaultMaxConcurrentBatches is Config.MaxConcurrentBatches's default.
const DefaultMaxConcurrentBatches = 16

// Config configures a Table.
type Config struct {
	QueueURL string
	// InFlightLimit is how many leases may be held at once: receives
	// reserve room first (Reserve), and a lease gives its room back when
	// its handler is done (Handled) or it ends (Remove). 0 means no limit.
	InFlightLimit int
	// VisibilityTimeout is the lease asked for on receive; the heartbeat
	// ticks a third of it. Required.
	VisibilityTimeout time.Duration
	// MaxExtension bounds one extension. Defaults to VisibilityTimeout.
	MaxExtension time.Duration
	// MaxProcessingTime stops extending a lease this long after it was
	// received. Defaults to sqsapi.MaxVisibility.
	MaxProcessingTime time.Duration
	// MaxConcurrentBatches bounds the extension calls in flight at once.
	// Defaults to 16.
	MaxConcurrentBatches int
	// RequestTimeout bounds one SQS call. Defaults to
	// batch.DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

type lease struct {
	msg          *message.Message
	visibleUntil time.Time
	hardLimit    time.Time
	cancel       context.CancelCauseFunc
	lost         bool
	handled      bool // its handler is done: its room was given back early
}

// Table is the lease table. Its methods are safe for concurrent use; the
// table is guarded by one mutex that no SQS call is made under. Start it
// to run the heartbeat; stop it last, after the final delete flush, since
// a lease stays registered until its delete is confirmed.
type Table struct {
	startstop.Lifecycle
	cfg     Config
	api     API
	log     *zap.Logger
	metrics *metrics.Metrics
	stats   *durations
	room    *room
	changes *batch.Sender // every visibility change: extensions, retries, releases

	mu     sync.Mutex
	leases map[string]*lease

	stopHeartbeat context.CancelFunc
	heartbeatDone chan struct{}
}

// New creates a Table.
func New(cfg Config, api API, log *zap.Logger, m *metrics.Metrics) *Table {
	if cfg.MaxExtension < cfg.VisibilityTimeout {
		cfg.MaxExtension = cfg.VisibilityTimeout
	}
	if cfg.MaxProcessingTime <= 0 || cfg.MaxProcessingTime > sqsapi.MaxVisibility {
		cfg.MaxProcessingTime = sqsapi.MaxVisibility
	}
	if cfg.MaxConcurrentBatches <= 0 {
		cfg.MaxConcurrentBatches = DefaultMaxConcurrentBatches
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Table{
		cfg: cfg, api: api, log: log.Named("lease"), metrics: m,
		stats:         newDurations(),
		leases:        make(map[string]*lease),
		heartbeatDone: make(chan struct{}),
	}
	if cfg.InFlightLimit > 0 {
		t.room = newRoom(cfg.InFlightLimit)
	}
	t.changes = batch.NewSender(batch.Config{
		Action: "change visibility of", QueueURL: cfg.QueueURL,
		MaxInFlight: cfg.MaxConcurrentBatches, RequestTimeout: cfg.RequestTimeout, Now: cfg.Now,
	}, t.changeVisibility, t.log)
	return t
}

// Reserve waits until there is room for want more leases (want is capped
// at the in-flight limit), takes it, and returns how much it took; it
// returns ctx's error if ctx is done first. Call it before a receive, and
// give back with Unreserve what the receive did not bring.
func (t *Table) Reserve(ctx context.Context, want int) (int, error) {
	if t.room == nil {
		return want, ctx.Err()
	}
	return t.room.Acquire(ctx, want)
}

// Unreserve gives back n units of reserved room that no lease took.
func (t *Table) Unreserve(n int) {
	if t.room != nil {
		t.room.Release(n)
	}
}

// Reserved is how much room is taken, by leases and by receives under way.
func (t *Table) Reserved() int {
	if t.room == nil {
		return 0
	}
	return t.room.InUse()
}

// Add registers freshly received messages, each taking one unit of the
// room its receive reserved; each is invisible until its ReceivedAt plus
// the VisibilityTimeout asked for on receive.
func (t *Table) Add(msgs ...*message.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, msg := range msgs {
		if old, ok := t.leases[msg.ID]; ok {
			// Redelivered to us while we still held it: the old handle is
			// stale. Fence the old lease; the new one replaces it.
			t.loseLocked(old)
			if !old.handled {
				t.Unreserve(1)
			}
		}
		hard := msg.ReceivedAt.Add(t.cfg.MaxProcessingTime)
		if sqsLimit := msg.FirstReceivedAt.Add(sqsapi.MaxVisibility); sqsLimit.Before(hard) {
			hard = sqsLimit
		}
		t.leases[msg.ID] = &lease{
			msg:          msg,
			visibleUntil: msg.ReceivedAt.Add(t.cfg.VisibilityTimeout),
			hardLimit:    hard,
		}
	}
	t.metrics.MessagesInFlight.Set(float64(len(t.leases)))
}

// Begin attaches a handler's cancel function to msg's lease. It returns
// false when the lease is already lost: the handler must not run.
func (t *Table) Begin(msg *message.Message, cancel context.CancelCauseFunc) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[msg.ID]
	if !ok || l.msg != msg || !t.heldLocked(l) {
		return false
	}
	l.cancel = cancel
	return true
}

// Alive reports whether msg's lease is still held, so that its receipt
// handle may be used.
func (t *Table) Alive(msg *message.Message) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[msg.ID]
	return ok && l.msg == msg && t.heldLocked(l)
}

// heldLocked reports whether l still holds its message: not lost, and not
// past its deadline (the heartbeat may not have noticed yet).
func (t *Table) heldLocked(l *lease) bool {
	return !l.lost && t.cfg.Now().Before(l.visibleUntil)
}

// ObserveDuration feeds one handler duration into the adaptive extension.
func (t *Table) ObserveDuration(d time.Duration) { t.stats.add(d) }

// Remove drops msg's lease: its delete was confirmed, its visibility was
// changed, or it was lost and its handler has finished.
func (t *Table) Remove(msg *message.Message) {
	t.mu.Lock()
	l, ok := t.leases[msg.ID]
	if !ok || l.msg != msg {
		t.mu.Unlock()
		return
	}
	delete(t.leases, msg.ID)
	t.metrics.MessagesInFlight.Set(float64(len(t.leases)))
	t.mu.Unlock()
	if !l.handled {
		t.Unreserve(1)
	}
}

// Handled says msg's handler is done and its delete is queued: its room
// for new receives is given back now, while the lease stays, kept alive,
// until the delete is confirmed and Remove is called. Without this, leases
// awaiting their delete batch would starve the fetchers.
func (t *Table) Handled(msg *message.Message) {
	t.mu.Lock()
	l, ok := t.leases[msg.ID]
	if !ok || l.msg != msg || l.handled {
		t.mu.Unlock()
		return
	}
	l.handled = true
	t.mu.Unlock()
	t.Unreserve(1)
}

// Len is the number of leases held.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.leases)
}

func (t *Table) loseLocked(l *lease) {
	if l.lost {
		return
	}
	l.lost = true
	// A handled lease refused by SQS has, almost always, just been deleted
	// by the delete in flight: not a loss worth counting. If the delete
	// did not happen, it fails too and is counted as a delete failure.
	if !l.handled {
		t.metrics.LeasesLost.Inc()
	}
	if l.cancel != nil {
		l.cancel(ErrLeaseLost)
	}
}

// handled reports whether msg's lease is waiting for its delete.
func (t *Table) handled(msg *message.Message) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[msg.ID]
	return ok && l.msg == msg && l.handled
}

// lose marks msg's lease lost, if msg still holds it.
func (t *Table) lose(msg *message.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.leases[msg.ID]; ok && l.msg == msg {
		t.loseLocked(l)
	}
}
