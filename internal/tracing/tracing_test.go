package tracing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) { testkit.WrapTestMain(m) }

const (
	producerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	producerState  = "congo=t61rcWkgMzE"
	xrayHeader     = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	xrayAsW3C      = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
)

func msgWith(attrs map[string]string, system map[string]string) *message.Message {
	m := &message.Message{ID: "m-1", Body: "{}", QueueURL: "http://127.0.0.1:1/000000000000/orders", SystemAttributes: system,
		Attributes: map[string]types.MessageAttributeValue{}}
	for k, v := range attrs {
		m.Attributes[k] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	return m
}

func TestFromMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		msg    *message.Message
		want   Carrier
		wantOK bool
	}{
		{"traceparent and tracestate attributes", msgWith(map[string]string{"traceparent": producerParent, "tracestate": producerState}, nil),
			Carrier{producerParent, producerState}, true},
		{"AWSTraceHeader only", msgWith(nil, map[string]string{"AWSTraceHeader": xrayHeader}), Carrier{TraceParent: xrayAsW3C}, true},
		{"the attribute wins over AWSTraceHeader", msgWith(map[string]string{"traceparent": producerParent},
			map[string]string{"AWSTraceHeader": xrayHeader}), Carrier{TraceParent: producerParent}, true},
		{"an invalid traceparent falls back to AWSTraceHeader", msgWith(map[string]string{"traceparent": "00-zz-zz-01"},
			map[string]string{"AWSTraceHeader": xrayHeader}), Carrier{TraceParent: xrayAsW3C}, true},
		{"an unparsable tracestate is dropped", msgWith(map[string]string{"traceparent": producerParent, "tracestate": "=,="}, nil),
			Carrier{TraceParent: producerParent}, true},
		{"neither", msgWith(nil, nil), Carrier{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := FromMessage(tt.msg)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("FromMessage = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFromXRay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, header, want string
	}{
		{"sampled", xrayHeader, xrayAsW3C},
		{"not sampled", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00"},
		{"sampling deferred", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?", "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00"},
		{"any order, Lineage and Self ignored", "Self=1-67891234-12456789abcdef012345678;Parent=53995C3F42CD8AD8;Lineage=a87bd80c:1;Root=1-5759E988-BD862E3FE1BE46A994272793;Sampled=1", xrayAsW3C},
		{"no parent", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", ""},
		{"bad root", "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", ""},
		{"zero trace id", "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := FromXRay(tt.header)
			if got.TraceParent != tt.want || ok != (tt.want != "") {
				t.Errorf("FromXRay(%q) = %q, %v; want %q", tt.header, got.TraceParent, ok, tt.want)
			}
		})
	}
}

// recordCarrier is a handler that keeps what it would pass on.
type recordCarrier struct {
	got []Carrier
	err error
}

func (r *recordCarrier) Handle(ctx context.Context, msg *message.Message) error {
	c, _ := For(ctx, msg)
	r.got = append(r.got, c)
	return r.err
}

// TestWrapRecordsOneConsumerSpanPerMessage: with an in-memory exporter,
// each message gets one CONSUMER span named "process <queue>" with the
// messaging attributes for SQS, in the producer's trace and linked to the
// producer's span; the handler passes on the consumer span's context.
func TestWrapRecordsOneConsumerSpanPerMessage(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	next := &recordCarrier{}
	h := Wrap(next, tp)
	msgs := []*message.Message{
		msgWith(map[string]string{"traceparent": producerParent, "tracestate": producerState}, nil),
		msgWith(nil, map[string]string{"AWSTraceHeader": xrayHeader}),
		msgWith(nil, nil),
	}
	for _, m := range msgs {
		if err := h.Handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	spans := exp.GetSpans()
	if len(spans) != len(msgs) {
		t.Fatalf("%d spans, want one per message (%d)", len(spans), len(msgs))
	}
	producers := []Carrier{{producerParent, producerState}, {TraceParent: xrayAsW3C}, {}}
	for i, s := range spans {
		if s.SpanKind != trace.SpanKindConsumer || s.Name != "process orders" {
			t.Errorf("span %d: %s %q, want a consumer span named \"process orders\"", i, s.SpanKind, s.Name)
		}
		attrs := attribute.NewSet(s.Attributes...)
		for k, want := range map[attribute.Key]string{
			"messaging.system": "aws_sqs", "messaging.operation.type": "process", "messaging.operation.name": "process",
			"messaging.destination.name": "orders", "messaging.message.id": "m-1",
		} {
			if v, ok := attrs.Value(k); !ok || v.AsString() != want {
				t.Errorf("span %d: %s = %q, want %q", i, k, v.AsString(), want)
			}
		}
		// What the handler passes on is this span's context.
		if got := next.got[i]; got != carrierOf(s.SpanContext) {
			t.Errorf("message %d: the handler passes on %+v, want the consumer span's %+v", i, got, carrierOf(s.SpanContext))
		}
		want := producers[i].spanContext()
		if !want.IsValid() {
			if len(s.Links) != 0 || s.Parent.IsValid() {
				t.Errorf("span %d: links %v, parent %v: want neither for a message without trace context", i, s.Links, s.Parent)
			}
			continue
		}
		if len(s.Links) != 1 || !s.Links[0].SpanContext.Equal(want) {
			t.Errorf("span %d: links %+v, want one to the producer's span %s", i, s.Links, want.SpanID())
		}
		if s.Parent.SpanID() != want.SpanID() || s.SpanContext.TraceID() != want.TraceID() {
			t.Errorf("span %d: trace %s, parent %s; want the producer's trace %s and span %s", i,
				s.SpanContext.TraceID(), s.Parent.SpanID(), want.TraceID(), want.SpanID())
		}
		if s.SpanContext.TraceState().String() != want.TraceState().String() {
			t.Errorf("span %d: tracestate %q, want the producer's %q", i, s.SpanContext.TraceState(), want.TraceState())
		}
	}
}

func TestWrapMarksFailedSpans(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	boom := errors.New("boom")
	if err := Wrap(&recordCarrier{err: boom}, tp).Handle(context.Background(), msgWith(nil, nil)); !errors.Is(err, boom) {
		t.Fatalf("Handle = %v, want the handler's error", err)
	}
	s := exp.GetSpans()
	if len(s) != 1 || s[0].Status.Code != codes.Error || s[0].Status.Description != "boom" {
		t.Errorf("spans %+v: want one with status Error \"boom\"", s)
	}
}

// TestWrapWithoutExportPassesTheProducersContext: with OpenTelemetry's
// default no-op provider, the handler gets the producer's trace context
// as it came.
func TestWrapWithoutExportPassesTheProducersContext(t *testing.T) {
	t.Parallel()
	next := &recordCarrier{}
	h := Wrap(next, noop.NewTracerProvider())
	for _, m := range []*message.Message{
		msgWith(map[string]string{"traceparent": producerParent, "tracestate": producerState}, nil),
		msgWith(nil, map[string]string{"AWSTraceHeader": xrayHeader}),
		msgWith(nil, nil),
	} {
		if err := h.Handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	want := []Carrier{{producerParent, producerState}, {TraceParent: xrayAsW3C}, {}}
	for i := range want {
		if next.got[i] != want[i] {
			t.Errorf("message %d: passed on %+v, want %+v", i, next.got[i], want[i])
		}
	}
}

func TestExporting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Exporting(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("Exporting = %v, want %v", got, tt.want)
			}
		})
	}
}

// batchRecorder is a batch handler that fails the messages in fail.
type batchRecorder struct {
	recordCarrier
	fail map[string]bool
}

func (b *batchRecorder) HandleBatch(_ context.Context, msgs []*message.Message) []error {
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		if b.fail[m.ID] {
			errs[i] = errors.New("failed in its batch")
		}
	}
	return errs
}

func (b *batchRecorder) Batching() (int, time.Duration) { return 10, time.Second }

// TestWrapKeepsABatchHandler: Wrap of a batch handler is a batch handler,
// and each message of a batch gets its own span, with its own result.
func TestWrapKeepsABatchHandler(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	msgs := []*message.Message{msgWith(nil, nil), msgWith(nil, nil)}
	msgs[1].ID = "second"
	h, ok := Wrap(&batchRecorder{fail: map[string]bool{"second": true}}, tp).(BatchHandler)
	if !ok {
		t.Fatal("Wrap of a batch handler is not a BatchHandler")
	}
	if size, window := h.Batching(); size != 10 || window != time.Second {
		t.Errorf("Batching %d, %s; want the batch handler's", size, window)
	}
	errs := h.HandleBatch(context.Background(), msgs)
	if errs[0] != nil || errs[1] == nil {
		t.Fatalf("errors %v, want the batch handler's", errs)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want one per message", len(spans))
	}
	for i, s := range spans {
		if wantErr := i == 1; (s.Status.Code == codes.Error) != wantErr {
			t.Errorf("span %d: status %v, want error %v", i, s.Status, wantErr)
		}
	}
}
