package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sqsworker/sqsworker/internal/buildinfo"
	"github.com/sqsworker/sqsworker/internal/message"
)

// instrumentation names the spans' instrumentation scope.
const instrumentation = "github.com/sqsworker/sqsworker"

// Handler is what Wrap wraps and returns; handler.Handler is the same
// interface.
type Handler interface {
	Handle(ctx context.Context, msg *message.Message) error
}

// BatchHandler is a Handler that also takes batches, as
// handler.BatchHandler: Wrap keeps it one.
type BatchHandler interface {
	Handler
	HandleBatch(ctx context.Context, msgs []*message.Message) []error
	Batching() (size int, window time.Duration)
}

type wrapped struct {
	next   Handler
	tracer trace.Tracer
}

// wrappedBatch is wrapped around a BatchHandler.
type wrappedBatch struct {
	*wrapped
	batch BatchHandler
}

// Wrap runs each message through next inside a CONSUMER span named
// "process <queue>", with OpenTelemetry's messaging attributes for SQS,
// parented by and linked to the producer's trace context when the message
// carries one. next passes on the span's context (For). With a provider
// that records nothing (OpenTelemetry's default, no-op), the span context
// passed on is the producer's, unchanged. A BatchHandler stays one: each
// message of a batch has its span, which lasts the batch's call.
func Wrap(next Handler, tp trace.TracerProvider) Handler {
	w := &wrapped{next: next, tracer: tp.Tracer(instrumentation, trace.WithInstrumentationVersion(buildinfo.Read().Version),
		trace.WithSchemaURL(semconv.SchemaURL))}
	if b, ok := next.(BatchHandler); ok {
		return wrappedBatch{wrapped: w, batch: b}
	}
	return w
}

func (w *wrapped) Handle(ctx context.Context, msg *message.Message) error {
	ctx, span := w.start(ctx, msg)
	defer span.End()
	err := w.next.Handle(ctx, msg)
	end(span, err)
	return err
}

// HandleBatch calls the batch handler inside a span for each message.
func (w wrappedBatch) HandleBatch(ctx context.Context, msgs []*message.Message) []error {
	spans := make([]trace.Span, len(msgs))
	for i, msg := range msgs {
		_, spans[i] = w.start(ctx, msg)
	}
	errs := w.batch.HandleBatch(ctx, msgs)
	for i, span := range spans {
		if i < len(errs) {
			end(span, errs[i])
		}
		span.End()
	}
	return errs
}

// Batching is the batch handler's.
func (w wrappedBatch) Batching() (size int, window time.Duration) { return w.batch.Batching() }

// start starts msg's span and returns the context that carries it.
func (w *wrapped) start(ctx context.Context, msg *message.Message) (context.Context, trace.Span) {
	queue := queueName(msg.QueueURL)
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemAWSSQS,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(queue),
			semconv.MessagingMessageID(msg.ID),
			semconv.MessagingMessageBodySize(len(msg.Body)),
			semconv.AWSSQSQueueURL(msg.QueueURL),
		),
	}
	if c, ok := FromMessage(msg); ok {
		producer := c.spanContext()
		// The producer's context is the parent, so the handler's work stays
		// in the producer's trace, and the link, as the messaging
		// conventions ask of a process span.
		ctx = trace.ContextWithRemoteSpanContext(ctx, producer)
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: producer}))
	}
	ctx, span := w.tracer.Start(ctx, "process "+queue, opts...)
	if sc := span.SpanContext(); sc.IsValid() {
		ctx = withCarrier(ctx, carrierOf(sc))
	}
	return ctx, span
}

// end records err, the handler's result, on span.
func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorType(err))
	}
}
