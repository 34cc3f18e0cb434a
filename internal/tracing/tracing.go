// Package tracing carries a message's trace context from its producer to
// the handler (W3C traceparent and tracestate, from the message's
// attributes or from SQS's AWSTraceHeader) and, when OpenTelemetry export
// is configured, records one CONSUMER span per message.
package tracing

import (
	"context"
	"net/url"
	"path"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sqsworker/sqsworker/internal/message"
)

// Names of the message attributes and system attribute trace context
// comes in.
const (
	AttributeTraceParent = "traceparent"
	AttributeTraceState  = "tracestate"
	// AWSTraceHeader is the system attribute SQS sets from the sender's
	// X-Ray header (X-Amzn-Trace-Id): Root=1-…;Parent=…;Sampled=1.
	AWSTraceHeader = "AWSTraceHeader"
)

// Carrier is W3C trace context as a handler receives it: the traceparent
// and tracestate headers of the HTTP handler, the TRACEPARENT and
// TRACESTATE variables of the exec handler.
type Carrier struct {
	TraceParent string
	TraceState  string
}

var w3c = propagation.TraceContext{}

// spanContext parses c; the result is invalid when c is not W3C trace
// context.
func (c Carrier) spanContext() trace.SpanContext {
	ctx := w3c.Extract(context.Background(), propagation.MapCarrier{"traceparent": c.TraceParent, "tracestate": c.TraceState})
	return trace.SpanContextFromContext(ctx)
}

// carrierOf renders a span context as W3C trace context.
func carrierOf(sc trace.SpanContext) Carrier {
	m := propagation.MapCarrier{}
	w3c.Inject(trace.ContextWithSpanContext(context.Background(), sc), m)
	return Carrier{TraceParent: m["traceparent"], TraceState: m["tracestate"]}
}

// FromMessage is the trace context the producer sent: the traceparent and
// tracestate message attributes when traceparent is valid, else the
// AWSTraceHeader system attribute converted from X-Ray's form. ok is false
// when the message carries neither.
func FromMessage(msg *message.Message) (Carrier, bool) {
	if tp, ok := msg.StringAttribute(AttributeTraceParent); ok {
		ts, _ := msg.StringAttribute(AttributeTraceState)
		c := Carrier{TraceParent: strings.TrimSpace(tp), TraceState: strings.TrimSpace(ts)}
		if sc := c.spanContext(); sc.IsValid() {
			if sc.TraceState().Len() > 0 || c.TraceState == "" {
				return c, true
			}
			return Carrier{TraceParent: c.TraceParent}, true // an unparsable tracestate is dropped, as W3C asks
		}
	}
	if h := msg.SystemAttributes[AWSTraceHeader]; h != "" {
		return FromXRay(h)
	}
	return Carrier{}, false
}

// FromXRay converts an X-Ray trace header (Root=1-5759e988-bd862e3fe1be46a994272793;
// Parent=53995c3f42cd8ad8;Sampled=1) to W3C trace context: the trace id is
// the Root's two hex parts joined, the parent id is Parent, and the
// sampled flag is set only for Sampled=1. ok is false without a valid Root
// and Parent.
func FromXRay(header string) (Carrier, bool) {
	var root, parent, sampled string
	for _, part := range strings.Split(header, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Root":
			root = v
		case "Parent":
			parent = v
		case "Sampled":
			sampled = v
		}
	}
	f := strings.Split(root, "-")
	if len(f) != 3 || f[0] != "1" || len(f[1]) != 8 || len(f[2]) != 24 {
		return Carrier{}, false
	}
	traceID, err := trace.TraceIDFromHex(strings.ToLower(f[1] + f[2]))
	if err != nil {
		return Carrier{}, false
	}
	spanID, err := trace.SpanIDFromHex(strings.ToLower(parent))
	if err != nil {
		return Carrier{}, false
	}
	var flags trace.TraceFlags
	if sampled == "1" {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: flags, Remote: true})
	return carrierOf(sc), true
}

type carrierKey struct{}

// withCarrier is ctx carrying the trace context handlers pass on.
func withCarrier(ctx context.Context, c Carrier) context.Context {
	return context.WithValue(ctx, carrierKey{}, c)
}

// For is the trace context a handler passes on for msg: the consumer
// span's when Wrap runs around the handler, else the producer's own, as
// the message carries it.
func For(ctx context.Context, msg *message.Message) (Carrier, bool) {
	if c, ok := ctx.Value(carrierKey{}).(Carrier); ok {
		return c, true
	}
	return FromMessage(msg)
}

// Env is For as the exec handler's environment: TRACEPARENT and, when
// there is one, TRACESTATE; nothing without trace context.
func Env(ctx context.Context, msg *message.Message) []string {
	c, ok := For(ctx, msg)
	if !ok {
		return nil
	}
	env := []string{"TRACEPARENT=" + c.TraceParent}
	if c.TraceState != "" {
		env = append(env, "TRACESTATE="+c.TraceState)
	}
	return env
}

// queueName is the last path segment of a queue URL.
func queueName(queueURL string) string {
	p := queueURL
	if u, err := url.Parse(queueURL); err == nil {
		p = u.Path
	}
	return path.Base(strings.TrimSuffix(p, "/"))
}
