package tracing

import (
	"context"

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

type wrapped struct {
	next   Handler
	tracer trace.Tracer
}

// Wrap runs each message through next inside a CONSUMER span named
// "process <queue>", with OpenTelemetry's messaging attributes for SQS,
// parented by and linked to the producer's trace context when the message
// carries one. next passes on the span's context (For). With a provider
// that records nothing (OpenTelemetry's default, no-op), the span context
// passed on is the producer's, unchanged.
func Wrap(next Handler, tp trace.TracerProvider) Handler {
	return &wrapped{next: next, tracer: tp.Tracer(instrumentation, trace.WithInstrumentationVersion(buildinfo.Read().Version),
		trace.WithSchemaURL(semconv.SchemaURL))}
}

func (w *wrapped) Handle(ctx context.Context, msg *message.Message) error {
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
	defer span.End()
	if sc := span.SpanContext(); sc.IsValid() {
		ctx = withCarrier(ctx, carrierOf(sc))
	}
	err := w.next.Handle(ctx, msg)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorType(err))
	}
	return err
}
