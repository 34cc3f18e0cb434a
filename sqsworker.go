package sqsworker

import (
	"context"
	"errors"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/tracing"
	"github.com/sqsworker/sqsworker/internal/worker"
)

// Client is the SQS calls a Worker makes. *sqs.Client implements it: pass
// the one built from your aws.Config, with your credentials, retries and
// middleware. SendMessage is used only to send a message a handler
// dead-letters to the dead-letter queue.
type Client interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Worker consumes one queue. Build it with New; Start it, or Run it; end
// it with Stop or StopAndCancel. All methods are safe for concurrent use.
type Worker struct {
	client  Client
	cfg     config.Pipeline
	handler handler.Handler
	log     *zap.Logger
	metrics *metrics.Metrics

	mu       sync.Mutex
	inner    *worker.Worker // set by a successful Start
	ended    bool           // Stop or StopAndCancel was called
	stopped  chan struct{}
	stopOnce sync.Once
}

// ErrStarted is Start's error when the worker was started, or stopped,
// before: a Worker runs once.
var ErrStarted = errors.New("sqsworker: the worker was already started or stopped; build a new one with New")

// New builds a Worker that consumes queue — its URL, or its name, looked
// up with GetQueueUrl at Start — with h, tuned by cfg (nil for every
// default). It checks cfg and the options and makes no SQS call; the
// first error names the field at fault.
func New(client Client, queue string, h Handler, cfg *Config, opts ...Option) (*Worker, error) {
	switch {
	case client == nil:
		return nil, errors.New("sqsworker: no SQS client: pass the *sqs.Client built from your aws.Config")
	case queue == "":
		return nil, errors.New("sqsworker: no queue: pass its URL or its name")
	case h == nil:
		return nil, errors.New("sqsworker: no handler")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	pipeline := cfg.pipeline(queue, o.registerer != nil)
	if err := pipeline.Validate(); err != nil {
		return nil, err
	}
	m, err := metrics.NewFor(o.registerer)
	if err != nil {
		return nil, err
	}
	inner := pipelineHandler(h)
	if o.tracer != nil {
		inner = tracing.Wrap(inner, o.tracer)
	}
	log := o.logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Worker{client: client, cfg: pipeline, handler: inner, log: log, metrics: m, stopped: make(chan struct{})}, nil
}

// Start looks the queue up (its URL, its redrive policy and dead-letter
// queue), then runs the worker in the background until Stop,
// StopAndCancel, or an error it cannot get past (the queue is deleted,
// receives keep failing), which Err then returns. A missing queue, or an
// endpoint that is not SQS, is Start's error. ctx bounds the look-up
// only.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inner != nil || w.ended {
		return ErrStarted
	}
	inner, err := worker.New(ctx, w.cfg, w.client, w.handler, w.log, worker.WithMetrics(w.metrics))
	if err != nil {
		return err
	}
	if err := inner.Start(ctx); err != nil {
		return err
	}
	w.inner = inner
	go func() {
		<-inner.Done()
		w.markStopped()
	}()
	return nil
}

// Stop shuts the worker down gracefully: no new receives, buffered
// messages handed back to SQS at once, running handlers let finish within
// Config.ShutdownTimeout (then cancelled, and their messages handed
// back), the last deletes sent. It returns once the worker has stopped,
// or when ctx ends (the shutdown goes on; Stopped tells when it is over).
// Stopping twice, or before Start, is harmless.
func (w *Worker) Stop(ctx context.Context) error {
	inner := w.end()
	if inner == nil {
		return nil
	}
	return inner.Stop(ctx)
}

// StopAndCancel is Stop that means now: running handlers' contexts are
// cancelled and their messages handed back to SQS rather than waited for,
// what succeeded is still deleted, and it returns within about two
// seconds.
func (w *Worker) StopAndCancel(ctx context.Context) error {
	inner := w.end()
	if inner == nil {
		return nil
	}
	return inner.StopAndCancel(ctx)
}

// end records that the worker is to stop, and returns the running
// pipeline, nil when it never started (then it counts as stopped).
func (w *Worker) end() *worker.Worker {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if w.inner == nil {
		w.markStopped()
	}
	return w.inner
}

func (w *Worker) markStopped() { w.stopOnce.Do(func() { close(w.stopped) }) }

// Stopped is closed once the worker has stopped: after Stop or
// StopAndCancel, or on its own (see Err).
func (w *Worker) Stopped() <-chan struct{} { return w.stopped }

// Err is why the worker stopped on its own, nil while it runs and after a
// Stop.
func (w *Worker) Err() error {
	w.mu.Lock()
	inner := w.inner
	w.mu.Unlock()
	if inner == nil {
		return nil
	}
	return inner.Err()
}

// Run starts the worker and runs it until ctx ends, then stops it
// gracefully (Stop) and returns nil; or until it stops on its own, and
// returns why.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return w.Stop(context.WithoutCancel(ctx))
	case <-w.Stopped():
		return w.Err()
	}
}

// Ready is nil while the worker receives: its last ReceiveMessage
// succeeded within WaitTime plus 30s, or receives are paused on purpose
// because the handler's downstream is failing. Otherwise it says why not.
// It suits a readiness probe.
func (w *Worker) Ready() error {
	w.mu.Lock()
	inner := w.inner
	w.mu.Unlock()
	if inner == nil {
		return errors.New("not started")
	}
	if ok, why := inner.Ready(); !ok {
		return errors.New(why)
	}
	return nil
}

// QueueURL is the URL of the queue the worker consumes, known once Start
// has looked it up; "" before.
func (w *Worker) QueueURL() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inner == nil {
		return ""
	}
	return w.inner.Config().QueueURL
}
