// Package fetch owns the fetcher goroutines: long polls of ReceiveMessage
// that take room from the in-flight limit before asking, register every
// lease before buffering its message, and back off on errors.
package fetch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/startstop"
)

// API is what fetch needs from SQS.
type API interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
}

// Leases is what fetch needs from the lease table, which owns the room
// for in-flight messages.
type Leases interface {
	Reserve(ctx context.Context, want int) (int, error)
	Unreserve(n int)
	Add(msgs ...*message.Message)
	Release(ctx context.Context, msgs []*message.Message)
}

// Health is told of every successful receive (for /readyz).
type Health interface {
	ReceiveSucceeded()
}

// Defaults for Config.
const (
	DefaultErrorBackoffMin = 100 * time.Millisecond
	DefaultErrorBackoffMax = 10 * time.Second
	// pollSlack is how long past its wait time a receive may take before
	// it is given up on.
	pollSlack = 10 * time.Second
)

// Config configures a Fetcher.
type Config struct {
	QueueURL string
	// Fetchers pins how many long polls run at once; 0 adapts their
	// number between 1 and MaxFetchers: one more while receives come
	// back full, one fewer when one comes back empty.
	Fetchers int
	// MaxFetchers bounds the adapted number of polls; with Fetchers 0 it
	// is required. The worker sets it to what the in-flight limit can use.
	MaxFetchers int
	// WaitTime is each long poll's wait.
	WaitTime time.Duration
	// VisibilityTimeout is the lease asked for on receive.
	VisibilityTimeout time.Duration
	// MaxMessages, when positive, ends receiving once this many messages
	// were received: Exhausted is closed then. Defaults to 0, no limit.
	MaxMessages int
	// ErrorBackoffMin and ErrorBackoffMax bound the wait after a failed
	// receive. Default to DefaultErrorBackoffMin and DefaultErrorBackoffMax.
	ErrorBackoffMin, ErrorBackoffMax time.Duration
	// Gate, when set, holds receives back while the handler's downstream
	// is failing (or not ready yet): what is received then could only be
	// held, and every receive counts toward the dead-letter queue.
	Gate Gate
}

// Gate says when a receive may start.
type Gate interface {
	WaitReceive(ctx context.Context) error
}

// ErrQueueMissing is Err's cause when the queue does not exist.
var ErrQueueMissing = errors.New("queue does not exist")

// errPollCancelled is receive's error for a long poll cancelled at stop.
var errPollCancelled = errors.New("long poll cancelled at stop")

// Fetcher runs the fetcher goroutines.
type Fetcher struct {
	startstop.Lifecycle
	cfg     Config
	api     API
	leases  Leases
	health  Health
	out     chan *message.Message
	log     *zap.Logger
	metrics *metrics.Metrics

	mu           sync.Mutex
	stopFetching context.CancelFunc // no new receives; set by Start
	abortPolls   context.CancelFunc // cancels long polls still waiting
	pollCtx      context.Context
	loopsDone    chan struct{}
	err          error        // set before loopsDone is closed
	polling      atomic.Int32 // receives under way
	loops        atomic.Int32 // fetcher goroutines running
	wg           sync.WaitGroup
	fail         func(error) // ends every fetcher: the queue is gone
	adaptMu      sync.Mutex
	polls        int // fetchers wanted, while adapting

	budget       atomic.Int64 // messages still to receive, with MaxMessages
	received     atomic.Int64
	exhausted    chan struct{} // closed once MaxMessages were received
	exhaustOnce  sync.Once
	lastReceived atomic.Int64 // unix nanos of the last receive that brought messages
}

// New creates a Fetcher that sends what it receives to out, and closes out
// once every fetcher has stopped. out must hold the in-flight limit, so
// that sending never blocks for long.
func New(cfg Config, api API, leases Leases, health Health,
	out chan *message.Message, log *zap.Logger, m *metrics.Metrics) *Fetcher {
	if cfg.ErrorBackoffMin <= 0 {
		cfg.ErrorBackoffMin = DefaultErrorBackoffMin
	}
	if cfg.ErrorBackoffMax < cfg.ErrorBackoffMin {
		cfg.ErrorBackoffMax = max(DefaultErrorBackoffMax, cfg.ErrorBackoffMin)
	}
	pollCtx, abort := context.WithCancel(context.Background())
	f := &Fetcher{cfg: cfg, api: api, leases: leases, health: health,
		out: out, log: log.Named("fetch"), metrics: m, pollCtx: pollCtx, abortPolls: abort,
		loopsDone: make(chan struct{}), exhausted: make(chan struct{})}
	f.budget.Store(int64(cfg.MaxMessages))
	f.lastReceived.Store(time.Now().UnixNano())
	return f
}

// Exhausted is closed once MaxMessages messages were received; the
// fetchers then end.
func (f *Fetcher) Exhausted() <-chan struct{} { return f.exhausted }

// LastReceived is when the last receive that brought messages returned,
// or when the Fetcher was created.
func (f *Fetcher) LastReceived() time.Time { return time.Unix(0, f.lastReceived.Load()) }

// Start launches the fetchers; they receive until Stop, or until the queue
// turns out not to exist (then Failed is closed and Err says why). Without
// a QueueURL it refuses: a receive naming no queue may be answered with
// an empty success, again and again.
func (f *Fetcher) Start(context.Context) error {
	if f.cfg.QueueURL == "" {
		return errors.New("fetch: QueueURL is required: the queue to receive from")
	}
	if err := f.BeginStart(); err != nil {
		return err
	}
	fctx, cancel := context.WithCancel(context.Background())
	f.mu.Lock()
	f.stopFetching = cancel
	f.mu.Unlock()
	var once sync.Once
	f.fail = func(err error) {
		once.Do(func() { f.err = err })
		cancel() // the queue is gone: stop the others too
	}
	f.polls = f.cfg.Fetchers
	if f.polls == 0 {
		f.polls = 1
	}
	for range f.polls {
		f.spawn(fctx)
	}
	go func() {
		f.wg.Wait()
		f.abortPolls()
		close(f.out)
		close(f.loopsDone)
	}()
	return nil
}

// spawn starts one more fetcher goroutine. The caller holds a count of wg
// (Start, or a fetcher that is still running), so wg never reaches zero
// while fetchers are added.
func (f *Fetcher) spawn(ctx context.Context) {
	f.wg.Add(1)
	f.metrics.ReceivePolls.Set(float64(f.loops.Add(1)))
	go func() {
		defer f.wg.Done()
		if err := f.loop(ctx); err != nil {
			f.fail(err)
		}
		f.metrics.ReceivePolls.Set(float64(f.loops.Add(-1)))
	}()
}

// adapt grows or shrinks the number of polls after a receive that asked
// for asked messages and got got; it reports whether this fetcher should
// end. A full receive says more was waiting: one more poll, up to
// MaxFetchers. An empty one says the others can carry the queue: one
// fewer, but the last stays, so an idle worker keeps one long poll open.
func (f *Fetcher) adapt(ctx context.Context, asked, got int) (end bool) {
	if f.cfg.Fetchers != 0 {
		return false
	}
	f.adaptMu.Lock()
	defer f.adaptMu.Unlock()
	switch {
	case got > 0 && got == asked && f.polls < f.cfg.MaxFetchers:
		f.polls++
		f.spawn(ctx)
	case got == 0 && f.polls > 1:
		f.polls--
		return true
	}
	return false
}

// Stop starts no new receive. A long poll already waiting is not
// cancelled (a cancelled poll orphans what SQS was handing it for a whole
// visibility timeout): it returns within the wait time, and what it
// brings is released at once, unless CancelWaitingPolls ends it sooner.
// When ctx is done first, the polls still waiting are cancelled and Stop
// returns ctx's error. Stop returns once every fetcher has stopped and
// out is closed. Stopping twice, or before Start, is harmless.
func (f *Fetcher) Stop(ctx context.Context) error {
	// No new receive from now on: before Stopping reports true.
	f.mu.Lock()
	if f.stopFetching != nil {
		f.stopFetching()
	}
	f.mu.Unlock()
	first, running := f.BeginStop()
	if !running {
		return nil
	}
	if !first {
		return f.Wait(ctx)
	}
	var err error
	select {
	case <-f.loopsDone:
	case <-ctx.Done():
		err = ctx.Err()
		if n := f.polling.Load(); n > 0 {
			f.log.Warn("cancelling long polls still waiting; what SQS hands them now stays invisible until its visibility timeout",
				zap.Int32("polls", n), zap.Duration("visibility_timeout", f.cfg.VisibilityTimeout),
				zap.Time("visible_again_by", time.Now().Add(f.cfg.VisibilityTimeout)))
		}
		f.abortPolls()
		<-f.loopsDone
	}
	f.Stopped()
	return err
}

// CancelWaitingPolls cancels the long polls still waiting, once Stop has
// begun; before, it does nothing. It is for a worker whose queue is idle,
// so that its stop need not wait out the polls' wait time: a poll still
// waiting has found nothing, and the risk is only a message that SQS
// hands it in that very instant. Such a message is not lost: it becomes
// visible again after its visibility timeout, its receive count one
// higher. Each cancelled poll is counted in ReceivesCancelled.
func (f *Fetcher) CancelWaitingPolls() {
	if !f.Stopping() {
		return
	}
	if n := f.polling.Load(); n > 0 {
		f.log.Debug("cancelling long polls still waiting on an idle queue; what SQS hands them now becomes visible again after its visibility timeout",
			zap.Int32("polls", n), zap.Duration("visibility_timeout", f.cfg.VisibilityTimeout))
	}
	f.abortPolls()
}

// Failed is closed when the fetchers stopped on their own: the queue does
// not exist. Err says why.
func (f *Fetcher) Failed() <-chan struct{} { return f.loopsDone }

// Err is why the fetchers stopped on their own, nil if they did not.
func (f *Fetcher) Err() error {
	select {
	case <-f.loopsDone:
		return f.err
	default:
		return nil
	}
}
