package sqsapi

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// TestResolveQueueAtAnEndpointThatIsNotSQS: answers SQS never gives are a
// *NotSQSError naming the endpoint and what was wrong, by name and by
// URL; an SQS error stays what it is.
func TestResolveQueueAtAnEndpointThatIsNotSQS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		body    string
		ref     func(endpoint string) QueueRef
		wantNot string // the NotSQSError's problem; "" for another error
	}{
		{name: "ok", status: 200, body: "ok", wantNot: "GetQueueUrl answered HTTP 200 with a body that is not SQS's JSON"},
		{name: "html", status: 200, body: "<html>It works!</html>", wantNot: "GetQueueUrl answered HTTP 200 with a body that is not SQS's JSON"},
		{name: "empty object", status: 200, body: "{}", wantNot: "GetQueueUrl returned no QueueUrl"},
		{name: "empty body", status: 200, body: "", wantNot: "GetQueueUrl returned no QueueUrl"},
		{name: "not a queue url", status: 200, body: `{"QueueUrl":"orders"}`, wantNot: `GetQueueUrl returned QueueUrl "orders", which is not a queue URL`},
		{name: "html page not found", status: 404, body: "<html>Not Found</html>", wantNot: "GetQueueUrl answered HTTP 404 with a body that is not SQS's JSON: \"<html>Not Found</html>\""},
		{name: "json error without a code", status: 404, body: `{"message":"no route"}`, wantNot: `GetQueueUrl answered HTTP 404 without an SQS error code ("no route")`},
		{name: "by url, empty object", status: 200, body: "{}",
			ref: func(ep string) QueueRef { return QueueRef{URL: ep + "/000000000000/orders"} }, wantNot: "GetQueueAttributes returned no QueueArn"},
		{name: "by url, ok", status: 200, body: "ok",
			ref: func(ep string) QueueRef { return QueueRef{URL: ep + "/000000000000/orders"} }, wantNot: "GetQueueAttributes answered HTTP 200 with a body that is not SQS's JSON"},
		{name: "an SQS error", status: 400, body: `{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no such queue"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			c := sqstest.NewClient(srv.URL)
			if got := Endpoint(c); got != srv.URL {
				t.Errorf("Endpoint = %q, want %q", got, srv.URL)
			}
			ref := QueueRef{Name: "orders"}
			if tt.ref != nil {
				ref = tt.ref(srv.URL)
			}
			q, err := ResolveQueue(t.Context(), c, ref, Endpoint(c))
			var ns *NotSQSError
			switch {
			case err == nil:
				t.Fatalf("ResolveQueue = %+v, nil; want an error", q)
			case tt.wantNot == "" && errors.As(err, &ns):
				t.Errorf("ResolveQueue = %v; want SQS's own error, not a NotSQSError", err)
			case tt.wantNot == "":
			case !errors.As(err, &ns):
				t.Errorf("ResolveQueue = %v (%T); want a *NotSQSError", err, err)
			case ns.Endpoint != srv.URL || !strings.HasPrefix(err.Error(), srv.URL+" did not answer like SQS ("+tt.wantNot+")"):
				t.Errorf("ResolveQueue = %q (endpoint %q); want it to name %s and %q", err, ns.Endpoint, srv.URL, tt.wantNot)
			}
		})
	}
}

func TestResolveQueueNamedTwoWays(t *testing.T) {
	t.Parallel()
	_, err := ResolveQueue(t.Context(), nil, QueueRef{URL: "https://sqs.eu-west-1.amazonaws.com/1/orders", Name: "orders-dlq"}, "")
	if err == nil || !strings.Contains(err.Error(), "queue named twice") {
		t.Errorf("ResolveQueue by URL and by name = %v; want an error", err)
	}
}
