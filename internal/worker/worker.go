// Package worker wires the pipeline — fetch, pool, lease table, ack,
// metrics — for one queue, runs it, and shuts it down in order, gracefully
// or forced. The public package sqsworker, and through it `worker run`,
// runs it; so does the in-process benchmark.
package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/ack"
	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/deadletter"
	"github.com/sqsworker/sqsworker/internal/downstream"
	"github.com/sqsworker/sqsworker/internal/fetch"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/pool"
	"github.com/sqsworker/sqsworker/internal/queuestats"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/startstop"
	"github.com/sqsworker/sqsworker/internal/visibility"
)

// Worker is the wired pipeline for one queue. New wires it, Start runs
// it, Stop or StopAndCancel end it; it also stops on its own when it
// cannot go on (Done closes, Err says why).
type Worker struct {
	cfg      config.Pipeline
	log      *zap.Logger
	metrics  *metrics.Metrics
	health   *metrics.Health
	leases   *visibility.Table
	deleter  *ack.Deleter
	fetcher  *fetch.Fetcher
	pool     *pool.Pool
	depths   *queuestats.Poller
	guard    *downstream.Guard
	buffered chan *message.Message
	// maxReceiveCount is the queue's redrive policy's, 0 without a DLQ.
	maxReceiveCount int
	// dlqURL is the dead-letter queue the redrive policy names, "" without.
	dlqURL string

	life      startstop.Lifecycle
	stopping  chan struct{} // closed by the first Stop or StopAndCancel
	forcing   chan struct{} // closed by StopAndCancel
	stopOnce  sync.Once
	forceOnce sync.Once
	err       error // why it stopped; set before life is Stopped
}

// API is every SQS call the pipeline makes; *sqs.Client implements it.
type API interface {
	fetch.API
	ack.API
	visibility.API
	deadletter.API
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Option changes how New wires the worker.
type Option func(*options)

type options struct {
	wrapAPI func(API) API
	metrics *metrics.Metrics
}

// WithMetrics makes the worker count into m; without it, it counts into
// collectors registered nowhere.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) { o.metrics = m }
}

// WithAPIWrapper puts wrap around the SQS client the pipeline uses; tests
// use it to inject the faults a real server cannot produce.
func WithAPIWrapper(wrap func(API) API) Option {
	return func(o *options) { o.wrapAPI = wrap }
}

// New checks the config, checks that the queue exists and that client's
// endpoint answers like SQS, and wires the pipeline around h. It opens no
// listener: whoever serves the metrics and /readyz reads Metrics and
// Ready. Nothing runs until Start.
func New(ctx context.Context, cfg config.Pipeline, client API, h handler.Handler, log *zap.Logger, opts ...Option) (*Worker, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.metrics == nil {
		o.metrics, _ = metrics.NewFor(nil) // registers nothing, so cannot fail
	}
	w := &Worker{cfg: cfg, log: log, metrics: o.metrics, stopping: make(chan struct{}), forcing: make(chan struct{})}
	w.health = metrics.NewHealth(cfg.WaitTime + 30*time.Second)
	endpoint := ""
	if c, ok := client.(*sqs.Client); ok {
		endpoint = sqsapi.Endpoint(c)
	}
	client = observed{api: client, opt: sqsapi.Observe(w.metrics)}
	if o.wrapAPI != nil {
		client = o.wrapAPI(client)
	}
	if err := w.resolveQueue(ctx, client, endpoint); err != nil {
		return nil, err
	}
	cfg = w.cfg // QueueURL resolved from Queue

	limit := cfg.InFlightLimit()
	w.leases = visibility.New(visibility.Config{
		QueueURL: cfg.QueueURL, InFlightLimit: limit, VisibilityTimeout: cfg.VisibilityTimeout,
		MaxExtension: cfg.MaxExtension, MaxProcessingTime: cfg.MaxProcessingTime,
	}, client, log, w.metrics)
	// As many deletes in flight as polls: each brings back up to ten
	// messages a round trip, each delete takes ten away in one, so
	// deletes keep pace with receives at any latency.
	w.deleter = ack.New(ack.Config{
		QueueURL: cfg.QueueURL, FlushInterval: cfg.DeleteFlushInterval,
		MaxInFlightBatches: max(batch.DefaultMaxInFlight, cfg.MaxFetchers()),
	}, client, w.leases, log, w.metrics)
	d := cfg.Downstream
	w.guard = downstream.New(downstream.Config{
		Concurrency: pool.Slots(cfg.Concurrency, h), DisableBreaker: !d.Breaker,
		FailureRate: d.BreakerFailureRate, MinFailures: d.BreakerMinFailures, Window: d.BreakerWindow,
		MaxProbeInterval: d.BreakerMaxProbeInterval, HealthURL: d.HealthURL,
		DisableAdaptive: !d.AdaptiveConcurrency, MaxRate: d.MaxRate, MaxRateBurst: d.MaxRateBurst,
	}, log, w.metrics)
	w.health.Paused = w.guard.Failing
	w.metrics.SetReady(func() bool { ok, _ := w.health.Ready(); return ok })
	w.buffered = make(chan *message.Message, limit)
	w.depths = queuestats.New(queuestats.Config{QueueURL: cfg.QueueURL, DLQURL: cfg.DLQURL, Interval: cfg.QueueStatsInterval},
		client, w.metrics.QueueMessages, log)
	w.fetcher = fetch.New(fetch.Config{
		QueueURL: cfg.QueueURL, Fetchers: cfg.Fetchers, MaxFetchers: cfg.MaxFetchers(), MaxMessages: cfg.MaxMessages,
		WaitTime: cfg.WaitTime, VisibilityTimeout: cfg.VisibilityTimeout, Gate: w.guard,
	}, client, w.leases, w.health, w.buffered, log, w.metrics)
	reserve := shutdownReserve(cfg.ShutdownTimeout)
	pcfg := pool.Config{
		Concurrency: cfg.Concurrency, FIFO: cfg.FIFO(), HandlerTimeout: cfg.HandlerTimeout,
		RetryBackoffMin: cfg.RetryBackoffMin, RetryBackoffMax: cfg.RetryBackoffMax,
		MaxReceiveCount: w.maxReceiveCount, CancelGrace: min(reserve/2, forcedExit/2),
		Gate: w.guard,
	}
	if w.dlqURL != "" {
		pcfg.DeadLetter = deadletter.New(client, w.dlqURL, w.metrics.MessagesDeadLettered)
	}
	w.pool = pool.New(pcfg, h, w.leases, w.deleter, w.buffered, log, w.metrics)
	return w, nil
}

// resolveQueue turns Queue into a URL and checks that the queue exists
// and the endpoint answers like SQS, so that a typo fails at start-up in
// one line. Nothing starts without a queue URL: an endpoint that answers
// every call with an empty success would otherwise look like an empty
// queue, polled as fast as it answers.
func (w *Worker) resolveQueue(ctx context.Context, client API, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	q, err := sqsapi.ResolveQueue(ctx, client, sqsapi.QueueRef{URL: w.cfg.QueueURL, Name: w.cfg.Queue}, endpoint)
	if err != nil {
		return err
	}
	if !sqsapi.IsQueueURL(q.URL) {
		return fmt.Errorf("queue %s resolved to %q, not a queue URL: not starting", sqsapi.QueueRef{URL: w.cfg.QueueURL, Name: w.cfg.Queue}, q.URL)
	}
	w.cfg.QueueURL, w.maxReceiveCount = q.URL, q.MaxReceiveCount()
	if q.RedrivePolicy != nil && q.RedrivePolicy.DeadLetterTargetARN != "" {
		// Only for handlers that ask for the dead-letter queue; without
		// its URL they are retried until SQS moves them.
		if w.dlqURL, err = sqsapi.QueueURLOfARN(ctx, client, q.RedrivePolicy.DeadLetterTargetARN); err != nil {
			w.log.Warn("cannot find the dead-letter queue: messages a handler marks for it are retried instead",
				zap.String("dead_letter_target_arn", q.RedrivePolicy.DeadLetterTargetARN), zap.Error(err))
			w.dlqURL = ""
		}
	}
	return nil
}

// Config is the configuration the worker runs with, QueueURL resolved.
func (w *Worker) Config() config.Pipeline { return w.cfg }

// Metrics is the worker's collectors, for callers that read them in-process.
func (w *Worker) Metrics() *metrics.Metrics { return w.metrics }

// Ready reports whether the last receive succeeded within the wait time
// plus 30s, or receives are paused on purpose, and says why not: what
// /readyz answers.
func (w *Worker) Ready() (bool, string) { return w.health.Ready() }

// Start runs the pipeline in the background until Stop or StopAndCancel,
// or until it cannot go on (the queue is gone, receives keep failing).
func (w *Worker) Start(ctx context.Context) error {
	if err := w.life.BeginStart(); err != nil {
		return err
	}
	// Receivers before senders: what a part hands on has somewhere to go.
	starts := []func(context.Context) error{w.leases.Start, w.deleter.Start, w.guard.Start, w.pool.Start, w.depths.Start, w.fetcher.Start}
	for _, start := range starts {
		if err := start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
	}
	cfg := w.cfg
	w.log.Debug("pipeline started", zap.String("queue_url", cfg.QueueURL), zap.Int("concurrency", cfg.Concurrency),
		zap.Int("fetchers", cfg.Fetchers), zap.Int("max_fetchers", cfg.MaxFetchers()),
		zap.Int("in_flight_limit", cfg.InFlightLimit()), zap.Bool("fifo", cfg.FIFO()))
	go w.supervise()
	return nil
}

// Stop shuts down gracefully, within the shutdown timeout: no new
// receives (polls already waiting are let return, and what they bring is
// released; those still waiting once the queue has been idle for a
// second are cancelled), buffered messages released, running handlers
// let finish, the last deletes flushed. It waits for the end, or for ctx to be done
// (the shutdown goes on). Stopping twice, or before Start, is harmless.
func (w *Worker) Stop(ctx context.Context) error {
	if _, running := w.life.BeginStop(); !running {
		return nil
	}
	w.stopOnce.Do(func() { close(w.stopping) })
	return w.life.Wait(ctx)
}

// StopAndCancel is Stop that means now: it cancels running handlers and
// releases their messages rather than wait for them, cancels the long
// polls still waiting (what SQS hands them stays invisible until its
// visibility timeout, and the log says so), flushes what was
// acknowledged, and returns within about two seconds.
func (w *Worker) StopAndCancel(ctx context.Context) error {
	w.forceOnce.Do(func() { close(w.forcing) })
	return w.Stop(ctx)
}

// Done is closed once the worker has stopped, by Stop or on its own.
func (w *Worker) Done() <-chan struct{} { return w.life.Done() }

// Err is why the worker stopped on its own, nil after a Stop.
func (w *Worker) Err() error {
	select {
	case <-w.life.Done():
		return w.err
	default:
		return nil
	}
}

// supervise waits for a stop, or a part that cannot go on, then shuts
// down.
func (w *Worker) supervise() {
	var idle <-chan time.Time // nil, so never ready, without an idle timeout
	if w.cfg.IdleTimeout > 0 {
		tick := time.NewTicker(min(w.cfg.IdleTimeout/4, time.Second))
		defer tick.Stop()
		idle = tick.C
	}
	exhausted, failed := w.fetcher.Exhausted(), w.fetcher.Failed()
	var settled <-chan time.Time // ticks once every message asked for was received
	for {
		select {
		case <-w.stopping:
			w.log.Info("shutting down: no new receives; releasing buffered messages; waiting for running handlers",
				zap.Duration("shutdown_timeout", w.cfg.ShutdownTimeout))
		case <-failed:
			if w.err = w.fetcher.Err(); w.err == nil {
				failed = nil // the fetchers ended because every message asked for was received
				continue
			}
			w.log.Error("stopping: cannot receive", zap.Error(w.err))
		case <-idle:
			since := time.Since(w.fetcher.LastReceived())
			if since < w.cfg.IdleTimeout {
				continue
			}
			w.log.Info("stopping: no message received within the idle timeout", zap.Duration("idle_timeout", w.cfg.IdleTimeout))
		case <-exhausted:
			exhausted = nil
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			settled = tick.C
			continue
		case <-settled:
			if w.leases.Len() > 0 {
				continue
			}
			w.log.Info("stopping: the messages asked for were received and handled", zap.Int("max_messages", w.cfg.MaxMessages))
		}
		break
	}
	w.shutdown()
	w.life.Stopped()
}
