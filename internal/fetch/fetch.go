// Package fetch owns the fetcher goroutines: long polls of ReceiveMessage
// that take room from the in-flight limit before asking, register every
// lease before buffering its message, and back off on errors.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// API is what fetch needs from SQS.
type API interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
}

// Leases is what fetch needs from the lease table.
type Leases interface {
	Add(msgs ...*message.Message)
	Release(ctx context.Context, msgs []*message.Message)
}

// Health is told of every successful receive (for /readyz).
type Health interface {
	ReceiveSucceeded()
}

// Config configures a Fetcher.
type Config struct {
	QueueURL string
	// Fetchers is how many long polls run at once. Required.
	Fetchers int
	// WaitTime is each long poll's wait.
	WaitTime time.Duration
	// VisibilityTimeout is the lease asked for on receive.
	VisibilityTimeout time.Duration
	// ErrorBackoffMin and ErrorBackoffMax bound the wait after a failed
	// receive. Default to 100ms and 10s.
	ErrorBackoffMin, ErrorBackoffMax time.Duration
}

// ErrQueueMissing is returned by Run when the queue does not exist.
var ErrQueueMissing = errors.New("queue does not exist")

// Fetcher runs the fetcher goroutines.
type Fetcher struct {
	cfg     Config
	api     API
	leases  Leases
	limiter *Limiter
	health  Health
	out     chan<- *message.Message
	log     *zap.Logger
	metrics *metrics.Metrics

	pollCtx    context.Context
	abortPolls context.CancelFunc
}

// New creates a Fetcher that sends to out, which Run closes when every
// fetcher has stopped.
func New(cfg Config, api API, leases Leases, limiter *Limiter, health Health,
	out chan<- *message.Message, log *zap.Logger, m *metrics.Metrics) *Fetcher {
	if cfg.ErrorBackoffMin <= 0 {
		cfg.ErrorBackoffMin = 100 * time.Millisecond
	}
	if cfg.ErrorBackoffMax < cfg.ErrorBackoffMin {
		cfg.ErrorBackoffMax = max(10*time.Second, cfg.ErrorBackoffMin)
	}
	pollCtx, abort := context.WithCancel(context.Background())
	return &Fetcher{cfg: cfg, api: api, leases: leases, limiter: limiter, health: health,
		out: out, log: log.Named("fetch"), metrics: m, pollCtx: pollCtx, abortPolls: abort}
}

// Run receives until ctx is done. A long poll already waiting when ctx is
// done is not cancelled (a cancelled poll orphans what SQS was handing it
// for a whole visibility timeout); what it brings is released at once. Run
// returns when every fetcher has stopped, having closed out; its error is
// non-nil only when the queue is missing.
func (f *Fetcher) Run(ctx context.Context) error {
	defer close(f.out)
	defer f.abortPolls()
	var wg sync.WaitGroup
	errc := make(chan error, f.cfg.Fetchers)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < f.cfg.Fetchers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.loop(fctx); err != nil {
				errc <- err
				cancel() // the queue is gone: stop the others too
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// Abort cancels long polls still waiting; for a forced shutdown only.
func (f *Fetcher) Abort() { f.abortPolls() }

func (f *Fetcher) loop(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		n, err := f.limiter.Acquire(ctx, 10)
		if err != nil {
			return nil
		}
		msgs, err := f.receive(n)
		if err != nil {
			f.limiter.Release(n)
			if sqsapi.IsQueueMissing(err) {
				return fmt.Errorf("receive from %s: %w (create it, or check --queue-url and the region)", f.cfg.QueueURL, ErrQueueMissing)
			}
			failures++
			wait := backoff.Jitter(backoff.Exponential(failures, f.cfg.ErrorBackoffMin, f.cfg.ErrorBackoffMax))
			if failures == 1 || failures%10 == 0 {
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
		f.limiter.Release(n - len(msgs))
		if len(msgs) == 0 {
			f.metrics.ReceiveEmpty.Inc()
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

func (f *Fetcher) receive(n int) ([]*message.Message, error) {
	ctx, cancel := context.WithTimeout(f.pollCtx, f.cfg.WaitTime+10*time.Second)
	defer cancel()
	out, err := f.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(f.cfg.QueueURL),
		MaxNumberOfMessages:         int32(n),
		WaitTimeSeconds:             int32(f.cfg.WaitTime / time.Second),
		VisibilityTimeout:           int32(f.cfg.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	}, noRetry)
	if err != nil {
		return nil, fmt.Errorf("receive up to %d messages: %w", n, err)
	}
	now := time.Now()
	msgs := make([]*message.Message, len(out.Messages))
	for i, m := range out.Messages {
		msgs[i] = message.FromSQS(f.cfg.QueueURL, m, now)
	}
	return msgs, nil
}
