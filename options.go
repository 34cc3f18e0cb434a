package sqsworker

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Option changes how New builds a Worker.
type Option func(*options)

type options struct {
	registerer prometheus.Registerer
	logger     *zap.Logger
	tracer     trace.TracerProvider
}

// WithRegisterer registers the worker's Prometheus collectors
// (sqsworker_*: messages received and processed by outcome, handler
// durations, SQS requests by action, leases, deletes, queue depth,
// downstream state) on reg. Without it nothing is registered anywhere:
// the worker never touches the default registry and never opens a port.
// Two workers on one registry need a label apart, such as
// prometheus.WrapRegistererWith(prometheus.Labels{"queue": name}, reg).
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.registerer = reg }
}

// WithLogger gives the worker a logger: retries, lost leases, failed
// handlers, the breaker opening and closing, the shutdown. Without it the
// worker logs nothing.
func WithLogger(log *zap.Logger) Option {
	return func(o *options) { o.logger = log }
}

// WithTracerProvider makes the worker start a consumer span per message
// from tp, a child of the producer's trace context when the message
// carries one (AWSTraceHeader or a traceparent message attribute); the
// handler's ctx carries the span.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp }
}
