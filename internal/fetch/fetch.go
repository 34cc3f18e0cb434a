// Package fetch owns the fetcher goroutines: long polls of ReceiveMessage
// that take room from the in-flight limit before asking, register every
// lease before buffering its message, and back off on errors.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
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

// take takes up to n messages of the MaxMessages budget; 0 with done set
// means every message of it was received.
func (f *Fetcher) take(n int) (took int, done bool) {
	if f.cfg.MaxMessages <= 0 {
		return n, false
	}
	for {
		left := f.budget.Load()
		if left <= 0 {
			return 0, f.received.Load() >= int64(f.cfg.MaxMessages)
		}
		k := min(int64(n), left)
		if f.budget.CompareAndSwap(left, left-k) {
			return int(k), false
		}
	}
}

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

func (f *Fetcher) loop(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		if f.cfg.Gate != nil && f.cfg.Gate.WaitReceive(ctx) != nil {
			return nil
		}
		want, done := f.take(sqsapi.MaxBatchEntries)
		if done {
			f.exhaustOnce.Do(func() { close(f.exhausted) })
			return nil
		}
		if want == 0 { // the rest of the budget is out with other polls
			backoff.Sleep(ctx, backoff.Jitter(f.cfg.ErrorBackoffMin))
			continue
		}
		n, err := f.leases.Reserve(ctx, want)
		if err != nil {
			f.giveBack(want)
			return nil
		}
		f.giveBack(want - n)
		if ctx.Err() != nil { // stopped while waiting for room: no new receive
			f.giveBack(n)
			f.leases.Unreserve(n)
			return nil
		}
		msgs, err := f.receive(n)
		if err != nil {
			f.giveBack(n)
			f.leases.Unreserve(n)
			if errors.Is(err, errPollCancelled) {
				return nil
			}
			if sqsapi.IsQueueMissing(err) {
				return fmt.Errorf("receive from %s: %w (create it, or check the queue URL and the region)", f.cfg.QueueURL, ErrQueueMissing)
			}
			failures++
			wait := backoff.Jitter(backoff.Exponential(failures, f.cfg.ErrorBackoffMin, f.cfg.ErrorBackoffMax))
			switch {
			case sqsapi.IsResponseLost(err):
				// Logged every time: these messages are late, not lost,
				// and this line says until when.
				f.metrics.ReceivesOrphaned.Inc()
				f.log.Warn("receive lost its response after SQS answered; the messages it was handed (up to max_messages) stay invisible until visible_again_by",
					zap.Int("max_messages", n), zap.Time("visible_again_by", time.Now().Add(f.cfg.VisibilityTimeout)),
					zap.Duration("retry_in", wait), zap.Error(err))
			case failures == 1 || failures%10 == 0:
				f.log.Warn("receive failed; will retry", zap.Int("consecutive_failures", failures),
					zap.Duration("retry_in", wait), zap.Error(err))
			}
			backoff.Sleep(ctx, wait)
			continue
		}
		if failures > 0 {
			f.log.Info("receive recovered", zap.Int("after_failures", failures))
			failures = 0
		}
		f.health.ReceiveSucceeded()
		f.leases.Unreserve(n - len(msgs))
		f.giveBack(n - len(msgs))
		if len(msgs) > 0 {
			f.received.Add(int64(len(msgs)))
			f.lastReceived.Store(time.Now().UnixNano())
		}
		end := f.adapt(ctx, n, len(msgs))
		if len(msgs) == 0 {
			f.metrics.ReceiveEmpty.Inc()
			if end {
				return nil
			}
			if f.cfg.WaitTime == 0 {
				backoff.Sleep(ctx, backoff.Jitter(f.cfg.ErrorBackoffMin))
			}
			continue
		}
		f.metrics.MessagesReceived.Add(float64(len(msgs)))
		f.metrics.ReceiveBatchSize.Observe(float64(len(msgs)))
		// Register before buffering: a message waiting for a handler is
		// kept alive too.
		f.leases.Add(msgs...)
		if ctx.Err() != nil {
			f.leases.Release(context.WithoutCancel(ctx), msgs)
			return nil
		}
		for _, m := range msgs {
			f.out <- m // never blocks for long: out holds the in-flight limit
		}
	}
	return nil
}

// noRetry makes one attempt of a receive. If an attempt fails after the
// server handed it messages (a connection cut mid-response), those stay
// invisible for a whole visibility timeout whatever happens next; an SDK
// retry would only add a second poll on top. The fetch loop backs off
// and polls again instead.
func noRetry(o *sqs.Options) { o.RetryMaxAttempts = 1 }

// giveBack returns n untaken messages to the MaxMessages budget.
func (f *Fetcher) giveBack(n int) {
	if f.cfg.MaxMessages > 0 && n > 0 {
		f.budget.Add(int64(n))
	}
}

// Every receive asks for every attribute; the SDK only reads these.
var (
	allSystemAttributes  = []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}
	allMessageAttributes = []string{"All"}
)

func (f *Fetcher) receive(n int) ([]*message.Message, error) {
	ctx, cancel := context.WithTimeout(f.pollCtx, f.cfg.WaitTime+pollSlack)
	defer cancel()
	f.polling.Add(1)
	defer f.polling.Add(-1)
	out, err := f.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    &f.cfg.QueueURL,
		MaxNumberOfMessages:         int32(n),
		WaitTimeSeconds:             int32(f.cfg.WaitTime / time.Second),
		VisibilityTimeout:           int32(f.cfg.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: allSystemAttributes,
		MessageAttributeNames:       allMessageAttributes,
	}, noRetry)
	if err != nil {
		if f.pollCtx.Err() != nil { // cancelled at stop, not failed
			f.metrics.ReceivesCancelled.Inc()
			f.log.Debug("long poll cancelled at stop", zap.Int("max_messages", n),
				zap.Time("visible_again_by", time.Now().Add(f.cfg.VisibilityTimeout)), zap.Error(err))
			return nil, errPollCancelled
		}
		return nil, fmt.Errorf("receive up to %d messages: %w", n, err)
	}
	now := time.Now()
	msgs := make([]*message.Message, len(out.Messages))
	for i, m := range out.Messages {
		msgs[i] = message.FromSQS(f.cfg.QueueURL, m, now)
		f.metrics.ObserveMessageAge(msgs[i].SentAt, now)
	}
	return msgs, nil
}
