// Package worker wires the pipeline — fetch, pool, visibility, ack,
// metrics — for one queue, and runs it until a signal with the graceful
// shutdown of DESIGN.md. cmd/worker and the benchmark both run it.
package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/ack"
	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/fetch"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/pool"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/visibility"
)

// Worker is the wired pipeline for one queue.
type Worker struct {
	cfg      config.Config
	log      *zap.Logger
	metrics  *metrics.Metrics
	health   *metrics.Health
	server   *metrics.Server
	leases   *visibility.Manager
	deleter  *ack.Deleter
	fetcher  *fetch.Fetcher
	pool     *pool.Pool
	buffered chan *message.Message
	// maxReceiveCount is the queue's redrive policy's, 0 without a DLQ.
	maxReceiveCount int
}

// API is every SQS call the pipeline makes; *sqs.Client implements it.
type API interface {
	fetch.API
	ack.API
	visibility.API
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Option changes how New wires the worker.
type Option func(*options)

type options struct {
	wrapAPI func(API) API
}

// WithAPIWrapper puts wrap around the SQS client the pipeline uses; tests
// use it to inject the faults a real server cannot produce.
func WithAPIWrapper(wrap func(API) API) Option {
	return func(o *options) { o.wrapAPI = wrap }
}

// New checks that the queue exists and the endpoint answers, opens the
// metrics listener, and wires the pipeline around h. Nothing runs until Run.
func New(ctx context.Context, cfg config.Config, h handler.Handler, log *zap.Logger, opts ...Option) (*Worker, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// Validate normalizes (a Prefetch of -1 becomes Concurrency); for
	// callers that embed the worker it is also the first check.
	if err := cfg.ValidateWithHandler(); err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: log, metrics: metrics.New()}
	w.health = metrics.NewHealth(cfg.WaitTime + 30*time.Second)
	sdk, err := sqsapi.New(ctx, sqsapi.Options{
		EndpointURL: cfg.EndpointURL, Region: cfg.Region, Observer: w.metrics,
	})
	if err != nil {
		return nil, err
	}
	var client API = sdk
	if o.wrapAPI != nil {
		client = o.wrapAPI(client)
	}
	if err := w.resolveQueue(ctx, client); err != nil {
		return nil, err
	}
	if cfg.MetricsAddr != "" {
		if w.server, err = metrics.Listen(cfg.MetricsAddr, w.metrics, w.health, cfg.Pprof); err != nil {
			return nil, err
		}
	}

	limit := cfg.InFlightLimit()
	limiter := fetch.NewLimiter(limit)
	w.leases = visibility.New(visibility.Config{
		QueueURL: cfg.QueueURL, VisibilityTimeout: cfg.VisibilityTimeout,
		MaxExtension: cfg.MaxExtension, MaxProcessingTime: cfg.MaxProcessingTime,
		OnRemove: func() { limiter.Release(1) },
	}, client, log, w.metrics)
	w.deleter = ack.New(ack.Config{QueueURL: cfg.QueueURL, FlushInterval: cfg.DeleteFlushInterval},
		client, w.leases, log, w.metrics)
	w.buffered = make(chan *message.Message, limit)
	w.fetcher = fetch.New(fetch.Config{
		QueueURL: cfg.QueueURL, Fetchers: cfg.Fetchers,
		WaitTime: cfg.WaitTime, VisibilityTimeout: cfg.VisibilityTimeout,
	}, client, w.leases, limiter, w.health, w.buffered, log, w.metrics)
	w.pool = pool.New(pool.Config{
		Concurrency: cfg.Concurrency, FIFO: cfg.FIFO(), HandlerTimeout: cfg.HandlerTimeout,
		RetryBackoffMin: cfg.RetryBackoffMin, RetryBackoffMax: cfg.RetryBackoffMax,
		MaxReceiveCount: w.maxReceiveCount,
	}, h, w.leases, w.deleter, log, w.metrics)
	return w, nil
}

// resolveQueue turns --queue into a URL and checks that the queue exists
// and the endpoint answers, so that a typo fails at start-up in one line.
func (w *Worker) resolveQueue(ctx context.Context, client API) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	where := "SQS"
	if w.cfg.EndpointURL != "" {
		where = w.cfg.EndpointURL
	}
	if w.cfg.QueueURL == "" {
		out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(w.cfg.Queue)})
		if err != nil {
			return explainQueueError(err, w.cfg.Queue, where)
		}
		w.cfg.QueueURL = aws.ToString(out.QueueUrl)
	}
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(w.cfg.QueueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameQueueArn, types.QueueAttributeNameRedrivePolicy,
		},
	})
	if err != nil {
		return explainQueueError(err, w.cfg.QueueURL, where)
	}
	w.maxReceiveCount = maxReceiveCount(out.Attributes[string(types.QueueAttributeNameRedrivePolicy)])
	return nil
}

// maxReceiveCount reads a RedrivePolicy attribute; 0 when the queue has
// no dead-letter queue (or the policy cannot be read).
func maxReceiveCount(policy string) int {
	if policy == "" {
		return 0
	}
	var p struct {
		MaxReceiveCount json.Number `json:"maxReceiveCount"` // SQS writes a number, older tools a string
	}
	if err := json.Unmarshal([]byte(policy), &p); err != nil {
		return 0
	}
	n, err := strconv.Atoi(p.MaxReceiveCount.String())
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func explainQueueError(err error, queue, where string) error {
	if sqsapi.IsQueueMissing(err) {
		return fmt.Errorf("queue %s does not exist at %s: create it (or check --queue-url/--queue, --region, --endpoint-url)", queue, where)
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg, "dial tcp") {
		msg = msg[i+2:]
	}
	return fmt.Errorf("cannot reach %s to look up queue %s: %s (check --endpoint-url, AWS_ENDPOINT_URL_SQS, credentials and network)", where, queue, msg)
}

// Serve builds a worker and runs it until a signal, then shuts down in DESIGN.md's
// order: stop receives, release the buffer, let handlers finish within the
// shutdown timeout while heartbeats go on, flush deletes, stop heartbeats.
func Serve(cfg config.Config, h handler.Handler, log *zap.Logger, signals <-chan os.Signal) error {
	w, err := New(context.Background(), cfg, h, log)
	if err != nil {
		return err
	}
	return w.Run(signals)
}

// Config is the configuration the worker runs with, QueueURL resolved.
func (w *Worker) Config() config.Config { return w.cfg }

// Metrics is the worker's collectors, for callers that read them in-process.
func (w *Worker) Metrics() *metrics.Metrics { return w.metrics }

// MetricsAddr is the address the metrics server listens on, "" without one.
func (w *Worker) MetricsAddr() string {
	if w.server == nil {
		return ""
	}
	return w.server.Addr()
}

// Run runs the pipeline until a signal arrives on signals (or receiving
// fails for good), then shuts down; a second signal forces the shutdown.
// Run may be called once.
func (w *Worker) Run(signals <-chan os.Signal) error {
	cfg, log := w.cfg, w.log

	bg := context.Background()
	heartbeatCtx, stopHeartbeats := context.WithCancel(bg)
	fetchCtx, stopFetching := context.WithCancel(bg)
	workCtx, cancelWork := context.WithCancel(bg)
	defer stopHeartbeats()
	defer stopFetching()
	defer cancelWork()

	heartbeatDone := make(chan struct{})
	go func() { _ = w.leases.Run(heartbeatCtx); close(heartbeatDone) }()
	w.deleter.Start()
	serverCtx, stopServer := context.WithCancel(bg)
	var serverDone chan error // nil, so never ready, without a server
	if w.server != nil {
		serverDone = make(chan error, 1)
		go func() { serverDone <- w.server.Run(serverCtx) }()
	}
	fetchDone := make(chan error, 1)
	go func() { fetchDone <- w.fetcher.Run(fetchCtx) }()
	poolDone := make(chan struct{})
	go func() { w.pool.Run(workCtx, w.buffered); close(poolDone) }()

	log.Info("worker started", zap.String("queue_url", cfg.QueueURL), zap.Int("concurrency", cfg.Concurrency),
		zap.Int("fetchers", cfg.Fetchers), zap.Int("in_flight_limit", cfg.InFlightLimit()), zap.Bool("fifo", cfg.FIFO()),
		zap.String("metrics_addr", w.MetricsAddr()))

	var runErr error
	select {
	case sig := <-signals:
		log.Info("shutting down: no new receives; releasing buffered messages; waiting for running handlers",
			zap.String("signal", sig.String()), zap.Duration("shutdown_timeout", cfg.ShutdownTimeout))
	case err := <-fetchDone:
		runErr = err
		fetchDone <- err
		log.Error("stopping: cannot receive", zap.Error(err))
	case err := <-serverDone:
		runErr = err
		serverDone <- err
		log.Error("stopping: metrics server failed", zap.Error(err))
	}

	// One deadline for the whole shutdown: handlers get all of it but a
	// reserve, in which a forced stop cancels them, releases the messages
	// of those that ignore it, and the last deletes are flushed.
	hardline := time.Now().Add(cfg.ShutdownTimeout)
	reserve := shutdownReserve(cfg.ShutdownTimeout)
	stopFetching()
	w.pool.Drain()
	handlersDeadline := time.NewTimer(cfg.ShutdownTimeout - reserve)
	defer handlersDeadline.Stop()
	select {
	case <-poolDone:
	case <-handlersDeadline.C:
		log.Warn("shutdown timeout: cancelling running handlers; their messages are released")
		w.forceStop(cancelWork, poolDone, reserve/2)
	case sig := <-signals:
		log.Warn("second signal: cancelling running handlers; their messages are released", zap.String("signal", sig.String()))
		w.forceStop(cancelWork, poolDone, reserve/2)
	}
	cancelWork()

	// The final flush runs on a context no signal cancels, until the
	// deadline but for at least a moment; heartbeats go on meanwhile so
	// leases stay valid.
	flushCtx, cancelFlush := context.WithDeadline(bg, later(hardline, time.Now().Add(2*time.Second)))
	if err := w.deleter.Stop(flushCtx); err != nil {
		log.Error("final delete flush incomplete; those messages will be redelivered", zap.Error(err))
	}
	cancelFlush()
	stopHeartbeats()
	<-heartbeatDone
	stopServer()
	if w.server != nil {
		if err := <-serverDone; err != nil {
			log.Warn("metrics server did not stop cleanly", zap.Error(err))
		}
	}
	// Long polls already waiting are let return (what they bring is
	// released) until the deadline; past it they are cancelled.
	pollsDeadline := time.NewTimer(time.Until(hardline))
	defer pollsDeadline.Stop()
	var fetchErr error
	select {
	case fetchErr = <-fetchDone:
	case <-pollsDeadline.C:
		w.fetcher.Abort()
		fetchErr = <-fetchDone
	}
	if fetchErr != nil && runErr == nil {
		runErr = fetchErr
	}
	if left := w.leases.Len(); left > 0 {
		log.Warn("leases still held at exit; those messages stay invisible until their visibility timeout", zap.Int("leases", left))
	}
	log.Info("worker stopped")
	return runErr
}

// forceStop cancels handlers, then waits at most wait for
// the pool; a handler that ignores its context cannot hold the process:
// its message is released without it.
func (w *Worker) forceStop(cancelWork context.CancelFunc, poolDone <-chan struct{}, wait time.Duration) {
	// Long polls are not cancelled here: a cancelled poll still waits at
	// the server and would take the messages released next.
	cancelWork()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-poolDone:
	case <-t.C:
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		n := w.pool.AbandonRunning(ctx)
		w.log.Error("handlers ignored their cancellation; released their messages, exiting without them", zap.Int("handlers", n))
	}
}

// shutdownReserve is the end of --shutdown-timeout kept for cancelling
// handlers, releasing messages and the last delete flush.
func shutdownReserve(timeout time.Duration) time.Duration {
	return min(timeout/4, 3*time.Second)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
