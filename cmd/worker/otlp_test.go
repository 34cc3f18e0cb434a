package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// otlpReceiver is a local OTLP/HTTP endpoint that keeps the spans it is
// sent, with their resource's service.name.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	service string
	srv     *httptest.Server
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var in coltracepb.ExportTraceServiceRequest
		if req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &in) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range in.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					r.service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				r.spans = append(r.spans, ss.GetSpans()...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) received() ([]*tracepb.Span, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...), r.service
}

// TestOTLPExportFromTheStandardEnvironment runs the binary with only
// OTEL_EXPORTER_OTLP_ENDPOINT (and a service name) set: the message it
// handles becomes one CONSUMER span, exported over OTLP/HTTP, in the
// producer's trace and linked to its span, and the HTTP handler gets that
// span's context in its traceparent header.
func TestOTLPExportFromTheStandardEnvironment(t *testing.T) {
	t.Parallel()
	const producer = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	q, err := server.CreateQueue(t.Context(), "otlp", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Client().SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String("traced"),
		MessageAttributes: map[string]types.MessageAttributeValue{"traceparent": {DataType: aws.String("String"), StringValue: aws.String(producer)}}}); err != nil {
		t.Fatal(err)
	}
	otlp := newOTLPReceiver(t)
	var mu sync.Mutex
	var header string
	app := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		header = r.Header.Get("traceparent")
		mu.Unlock()
	}))
	defer app.Close()
	w, err := server.StartWorker(workerBin, sqstest.WorkerOptions{
		Args: []string{"--queue-url", q.URL, "--http-url", app.URL, "--wait-time", "1s"},
		Env:  []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.srv.URL, "OTEL_SERVICE_NAME=orders-worker", "OTEL_BSP_SCHEDULE_DELAY=100"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Kill()
	testkit.Eventually(t, time.Minute, "a span exported", func() bool { s, _ := otlp.received(); return len(s) > 0 })
	if code, err := w.Stop(syscall.SIGTERM, 30*time.Second); err != nil || code != 0 {
		t.Errorf("exit %d (%v), want 0", code, err)
	}
	spans, service := otlp.received()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported, want one for the one message", len(spans))
	}
	s := spans[0]
	f := strings.Split(producer, "-")
	if s.GetKind() != tracepb.Span_SPAN_KIND_CONSUMER || s.GetName() != "process "+q.Name || service != "orders-worker" {
		t.Errorf("span %q of kind %s from service %q, want a CONSUMER span %q from orders-worker", s.GetName(), s.GetKind(), service, "process "+q.Name)
	}
	if hex.EncodeToString(s.GetTraceId()) != f[1] || hex.EncodeToString(s.GetParentSpanId()) != f[2] {
		t.Errorf("span in trace %x under %x, want the producer's trace %s under its span %s", s.GetTraceId(), s.GetParentSpanId(), f[1], f[2])
	}
	if l := s.GetLinks(); len(l) != 1 || hex.EncodeToString(l[0].GetSpanId()) != f[2] {
		t.Errorf("links %v, want one to the producer's span %s", l, f[2])
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "00-" + f[1] + "-" + hex.EncodeToString(s.GetSpanId()) + "-01"; header != want {
		t.Errorf("the handler got traceparent %q, want the consumer span's %q", header, want)
	}
}
