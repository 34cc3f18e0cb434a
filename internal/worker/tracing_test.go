package worker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
	"github.com/sqsworker/sqsworker/internal/tracing"
)

// xrayAPI is the pipeline's SQS client with what the local server cannot
// do: keep a sender's X-Ray header as the AWSTraceHeader system attribute.
// It sets that attribute on each received message whose body names one.
type xrayAPI struct {
	API
	ReceiveMessageFunc func(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
}

func (x *xrayAPI) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return x.ReceiveMessageFunc(ctx, in, opts...)
}

func withXRayHeaders(api API) API {
	return &xrayAPI{API: api, ReceiveMessageFunc: func(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
		out, err := api.ReceiveMessage(ctx, in, opts...)
		if err != nil {
			return out, err
		}
		for i, m := range out.Messages {
			if h, ok := strings.CutPrefix(aws.ToString(m.Body), "xray "); ok {
				if out.Messages[i].Attributes == nil {
					out.Messages[i].Attributes = map[string]string{}
				}
				out.Messages[i].Attributes[tracing.AWSTraceHeader] = h
			}
		}
		return out, nil
	}}
}

// received is the trace context one message's handler got.
type received struct{ traceParent, traceState string }

type receivedLog struct {
	mu  sync.Mutex
	got map[string]received // by body
}

func (l *receivedLog) add(body string, r received) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got[body] = r
}

func (l *receivedLog) snapshot() map[string]received {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]received, len(l.got))
	for k, v := range l.got {
		out[k] = v
	}
	return out
}

// TestTraceContextReachesHandlers sends one message with traceparent and
// tracestate attributes and one with only an AWSTraceHeader, and checks
// what reaches the HTTP handler (traceparent and tracestate headers) and
// the exec handler (TRACEPARENT and TRACESTATE): without export, the
// producer's context as sent (converted to W3C from X-Ray); with an
// in-memory exporter, one CONSUMER span per message named "process
// <queue>", in the producer's trace, linked to the producer's span, whose
// own context is what the handler gets.
func TestTraceContextReachesHandlers(t *testing.T) {
	const (
		w3cParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		w3cState  = "congo=t61rcWkgMzE"
		xray      = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
		xrayW3C   = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
	)
	for _, kind := range []string{"http", "exec"} {
		for _, exporting := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s exporting=%v", kind, exporting), func(t *testing.T) {
				t.Parallel()
				q, err := server.CreateQueue(ctxT(t), "tracing", sqstest.QueueOptions{})
				if err != nil {
					t.Fatal(err)
				}
				w3cBody, xrayBody := "w3c", "xray "+xray
				client := server.Client()
				if _, err := client.SendMessage(ctxT(t), &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(w3cBody),
					MessageAttributes: map[string]types.MessageAttributeValue{
						"traceparent": {DataType: aws.String("String"), StringValue: aws.String(w3cParent)},
						"tracestate":  {DataType: aws.String("String"), StringValue: aws.String(w3cState)},
					}}); err != nil {
					t.Fatal(err)
				}
				if _, err := client.SendMessage(ctxT(t), &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(xrayBody)}); err != nil {
					t.Fatal(err)
				}

				log := &receivedLog{got: map[string]received{}}
				base, poll := traceRecordingHandler(t, kind, log)
				exp := tracetest.NewInMemoryExporter()
				cfg := config.Default()
				cfg.QueueURL, cfg.WaitTime, cfg.Concurrency = q.URL, time.Second, 2
				cfg.EndpointURL, cfg.MetricsAddr = server.Endpoint, "127.0.0.1:0"
				if err := cfg.Validate(); err != nil {
					t.Fatal(err)
				}
				// Without export the binary runs the handler unwrapped.
				h := base
				if exporting {
					sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
					defer func() { _ = sdk.Shutdown(context.Background()) }()
					h = tracing.Wrap(base, sdk)
				}
				r := startWith(t, cfg, h, WithAPIWrapper(withXRayHeaders))
				testkit.Eventually(t, time.Minute, "both messages handled and deleted", func() bool {
					poll()
					return len(log.snapshot()) == 2 && testkit.Value(r.w.Metrics().MessagesDeleted) == 2
				})
				if err := r.stop(30 * time.Second); err != nil {
					t.Fatal(err)
				}
				got := log.snapshot()
				if !exporting {
					want := map[string]received{w3cBody: {w3cParent, w3cState}, xrayBody: {xrayW3C, ""}}
					for body, w := range want {
						if got[body] != w {
							t.Errorf("%s handler got %+v for the %q message, want the producer's %+v", kind, got[body], body, w)
						}
					}
					return
				}
				spans := exp.GetSpans()
				if len(spans) != 2 {
					t.Fatalf("%d spans, want one per message", len(spans))
				}
				producers := map[string]string{w3cBody: w3cParent, xrayBody: xrayW3C}
				for _, s := range spans {
					if s.SpanKind != trace.SpanKindConsumer || s.Name != "process "+q.Name || !sqsAttributes(s, q.Name) {
						t.Errorf("span %q (%s) %v: want a consumer span named %q with the messaging attributes for SQS",
							s.Name, s.SpanKind, s.Attributes, "process "+q.Name)
					}
				}
				for body, producer := range producers {
					s := spanOf(spans, body, got)
					if s == nil {
						t.Errorf("no span is the context the handler got for the %q message (%+v)", body, got[body])
						continue
					}
					f := strings.Split(producer, "-")
					if s.SpanContext.TraceID().String() != f[1] || s.Parent.SpanID().String() != f[2] {
						t.Errorf("%q message: span in trace %s under %s, want the producer's trace %s under its span %s",
							body, s.SpanContext.TraceID(), s.Parent.SpanID(), f[1], f[2])
					}
					if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID().String() != f[2] || s.Links[0].SpanContext.TraceID().String() != f[1] {
						t.Errorf("%q message: links %+v, want one to the producer's span %s", body, s.Links, f[2])
					}
					wantState := ""
					if body == w3cBody {
						wantState = w3cState
					}
					if got[body].traceState != wantState {
						t.Errorf("%q message: tracestate %q, want %q", body, got[body].traceState, wantState)
					}
				}
			})
		}
	}
}

// sqsAttributes reports whether a span has the messaging attributes of
// processing one message from queue.
func sqsAttributes(s tracetest.SpanStub, queue string) bool {
	attrs := attribute.NewSet(s.Attributes...)
	for k, want := range map[attribute.Key]string{
		"messaging.system": "aws_sqs", "messaging.operation.type": "process", "messaging.destination.name": queue,
	} {
		if v, _ := attrs.Value(k); v.AsString() != want {
			return false
		}
	}
	id, _ := attrs.Value("messaging.message.id")
	return id.AsString() != ""
}

// spanOf is the span whose context is the traceparent the handler got for
// body.
func spanOf(spans tracetest.SpanStubs, body string, got map[string]received) *tracetest.SpanStub {
	for i, s := range spans {
		want := fmt.Sprintf("00-%s-%s-%s", s.SpanContext.TraceID(), s.SpanContext.SpanID(), s.SpanContext.TraceFlags())
		if got[body].traceParent == want {
			return &spans[i]
		}
	}
	return nil
}

// traceRecordingHandler is a handler of the given kind that records the
// trace context each message reaches it with: an HTTP endpoint reading
// the traceparent and tracestate headers, or a command writing its
// TRACEPARENT and TRACESTATE to a file. poll reads the file.
func traceRecordingHandler(t *testing.T, kind string, log *receivedLog) (h handler.Handler, poll func()) {
	t.Helper()
	if kind == "http" {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			log.add(string(body), received{r.Header.Get("traceparent"), r.Header.Get("tracestate")})
		}))
		t.Cleanup(srv.Close)
		h, err := handler.NewHTTP(handler.HTTPConfig{URL: srv.URL}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		return h, func() {}
	}
	out := filepath.Join(t.TempDir(), "received")
	script := `b=$(cat); printf '%s|%s|%s\n' "$b" "$TRACEPARENT" "$TRACESTATE" >> "$1"`
	h, err := handler.NewExec(handler.ExecConfig{Argv: []string{"sh", "-c", script, "sh", out}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return h, func() {
		b, _ := os.ReadFile(out)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Split(line, "|"); len(f) == 3 {
				log.add(f[0], received{f[1], f[2]})
			}
		}
	}
}
