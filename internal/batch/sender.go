package batch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/startstop"
)

// DefaultMaxPending is the backlog at which Add blocks.
const DefaultMaxPending = 1000

// errStopped abandons entries added after Stop.
var errStopped = errors.New("batch sender stopped")

// Config configures a Sender.
type Config struct {
	// Action says what a call does, for logs: "delete", "change visibility of".
	Action string
	// QueueURL is the queue the calls go to, for logs.
	QueueURL string
	// FlushInterval is how long an added entry waits for nine others.
	// Defaults to DefaultFlushInterval.
	FlushInterval time.Duration
	// MaxInFlight bounds the calls in flight at once. Defaults to
	// DefaultMaxInFlight.
	MaxInFlight int
	// MaxPending is the backlog (added, not yet settled) at which Add
	// blocks, until it falls below half. Defaults to DefaultMaxPending.
	MaxPending int
	// RequestTimeout bounds one call. Defaults to DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Attempts is how many calls an entry gets while it fails
	// transiently. Defaults to DefaultAttempts; UnlimitedAttempts retries
	// while Live holds and the context allows.
	Attempts int
	// RetryAllErrors retries a failed call whatever its error, not only
	// throttling, 5xx and network errors.
	RetryAllErrors bool
	// Live, when set, is asked before every attempt whether an entry's
	// receipt handle may still be used; the entries it refuses are Skipped.
	Live func(*message.Message) bool
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Attempts == 0 {
		c.Attempts = DefaultAttempts
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Sender sends one family of batch calls. Add coalesces entries into calls
// of up to ten (flushed when full or after FlushInterval); Send sends a
// set of entries now and waits for them. Both share MaxInFlight long-lived
// senders: a goroutine per call would grow its stack anew through the
// SDK's deep middleware. Add fills the batch itself, under a lock, rather
// than hand every entry to a goroutine of its own.
type Sender struct {
	startstop.Lifecycle
	cfg  Config
	call Call
	log  *zap.Logger

	// jobs carries batches to the senders. It holds MaxPending, so that a
	// batch of added entries (at least one of the backlog each) never
	// waits for room.
	jobs    chan job
	busy    atomic.Int32 // senders making a call now
	ctx     context.Context
	cancel  context.CancelFunc // ends every call: Stop's deadline passed
	closeMu sync.RWMutex       // held to read, by Add, Send and the flush timer; to write, by Stop
	closed  bool

	mu      sync.Mutex
	pending int
	gate    chan struct{} // non-nil while Add blocks; closed to let it go
	batch   []Entry       // added, not yet in a call
	flushAt time.Time     // when batch is sent if it is not full by then
	flush   *time.Timer   // fires at flushAt
}

type job struct {
	ctx     context.Context
	call    Call
	entries []Entry
	// added says the entries came from Add: settling them lowers the
	// backlog. wg, when set, is told of every settled entry (Send).
	added bool
	wg    *sync.WaitGroup
}

// finish settles e, one of j's entries, with r.
func (s *Sender) finish(j *job, e Entry, r Result) {
	if e.Done != nil {
		e.Done(e, r)
	}
	if j.added {
		s.settled(1)
	}
	if j.wg != nil {
		j.wg.Done()
	}
}

// NewSender creates a Sender making call. Start it before Add or Send.
func NewSender(cfg Config, call Call, log *zap.Logger) *Sender {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{
		cfg: cfg, call: call, log: log,
		jobs: make(chan job, cfg.MaxPending),
		ctx:  ctx, cancel: cancel,
		batch: make([]Entry, 0, MaxEntries),
	}
	s.flush = time.AfterFunc(time.Hour, s.flushDue)
	s.flush.Stop()
	return s
}

// Start launches the senders. They run until Stop.
func (s *Sender) Start(context.Context) error {
	if err := s.BeginStart(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range s.cfg.MaxInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range s.jobs {
				s.busy.Add(1)
				s.send(j)
				s.busy.Add(-1)
			}
		}()
	}
	go func() {
		wg.Wait()
		s.cancel()
		s.Stopped()
	}()
	return nil
}

// Stop flushes what was added and waits for every call to settle, or for
// ctx to be done, after which the calls still retrying are abandoned.
// Nothing may be added after Stop; a Send after it runs on the caller's
// goroutine. Stopping twice is harmless; a Stop before Start starts the
// sender first, so that what was added before is still sent.
func (s *Sender) Stop(ctx context.Context) error {
	_ = s.Start(ctx) // ErrStarted once started or stopped: nothing to do
	first, running := s.BeginStop()
	if first {
		s.closeMu.Lock()
		s.closed = true
		s.flush.Stop()
		if running {
			s.mu.Lock()
			last := s.takeLocked()
			s.mu.Unlock()
			s.enqueue(last)
			close(s.jobs)
		}
		s.closeMu.Unlock()
	}
	if !running {
		return nil
	}
	if err := s.Wait(ctx); err != nil {
		s.cancel()
		<-s.Done()
		return err
	}
	return nil
}

// Add queues e for the next call. It blocks while the backlog is at
// MaxPending, until it falls below half or ctx is done (then e is not
// added and Add returns ctx's error). After Stop, e is abandoned at once.
func (s *Sender) Add(ctx context.Context, e Entry) error {
	for {
		s.mu.Lock()
		if s.gate == nil {
			s.pending++
			if s.pending >= s.cfg.MaxPending {
				s.gate = make(chan struct{})
			}
			s.mu.Unlock()
			break
		}
		gate := s.gate
		s.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		s.finish(&job{added: true}, e, Result{Outcome: Abandoned, Err: errStopped})
		return nil
	}
	s.mu.Lock()
	old, superseded := s.addLocked(e)
	var full []Entry
	if len(s.batch) == MaxEntries {
		full = s.takeLocked()
	}
	s.mu.Unlock()
	if superseded {
		s.finish(&job{added: true}, old, Result{Outcome: Superseded})
	}
	s.enqueue(full)
	return nil
}

// addLocked puts e in the batch. The same message twice (redelivered,
// settled twice) keeps the newest handle in one entry, since SQS rejects
// a batch naming a message twice: the older entry is returned, to settle
// as superseded.
func (s *Sender) addLocked(e Entry) (Entry, bool) {
	for i, old := range s.batch {
		if old.Msg.ID == e.Msg.ID {
			s.batch[i] = e
			return old, true
		}
	}
	s.batch = append(s.batch, e)
	if len(s.batch) == 1 {
		s.flushAt = time.Now().Add(s.cfg.FlushInterval)
		s.flush.Reset(s.cfg.FlushInterval)
	}
	return Entry{}, false
}

// takeLocked empties the batch and returns what it held.
func (s *Sender) takeLocked() []Entry {
	if len(s.batch) == 0 {
		return nil
	}
	s.flush.Stop()
	b := s.batch
	s.batch = make([]Entry, 0, MaxEntries)
	return b
}

// enqueue hands a batch of added entries to the senders. The caller holds
// closeMu to read, or to write before it closes jobs.
func (s *Sender) enqueue(entries []Entry) {
	if len(entries) > 0 {
		s.jobs <- job{ctx: s.ctx, call: s.call, entries: entries, added: true}
	}
}

// flushDue sends the batch once its FlushInterval has passed, unless
// every sender is busy: then it waits another interval, and the batch
// fills meanwhile, as a call could not leave any sooner.
func (s *Sender) flushDue() {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return // Stop sent it
	}
	s.mu.Lock()
	switch wait := time.Until(s.flushAt); {
	case len(s.batch) == 0:
	case wait > 0:
		// A timer of an earlier batch fired as this one began.
		s.flush.Reset(wait)
	case int(s.busy.Load()) >= s.cfg.MaxInFlight:
		s.flushAt = time.Now().Add(s.cfg.FlushInterval)
		s.flush.Reset(s.cfg.FlushInterval)
	default:
		b := s.takeLocked()
		s.mu.Unlock()
		s.enqueue(b)
		return
	}
	s.mu.Unlock()
}

// Send sends entries now, ten to a call, and returns once every entry is
// settled (each entry's Done has been called). ctx bounds the calls and
// their retries.
func (s *Sender) Send(ctx context.Context, entries []Entry) {
	s.SendWith(ctx, s.call, entries)
}

// SendWith is Send with another call of the same family (one that counts
// itself differently, say).
func (s *Sender) SendWith(ctx context.Context, call Call, entries []Entry) {
	if len(entries) == 0 {
		return
	}
	var wg sync.WaitGroup
	wg.Add(len(entries))
	s.closeMu.RLock()
	inline := s.closed || !s.Running()
	for start := 0; start < len(entries); start += MaxEntries {
		j := job{ctx: ctx, call: call, entries: entries[start:min(start+MaxEntries, len(entries))], wg: &wg}
		if inline {
			s.send(j)
			continue
		}
		s.jobs <- j
	}
	s.closeMu.RUnlock()
	wg.Wait()
}

func (s *Sender) settled(n int) {
	s.mu.Lock()
	s.pending -= n
	if s.gate != nil && s.pending < max(s.cfg.MaxPending/2, 1) {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
}

// Backlog is how many added entries are not settled yet, and whether Add
// blocks because of them.
func (s *Sender) Backlog() (pending int, blocking bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending, s.gate != nil
}
