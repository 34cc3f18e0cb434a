package fetch

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// cutFirstReceive is a transport that lets the first ReceiveMessage reach
// the server, which hands it its messages and answers 200, then cuts the
// response body after its first bytes, as a dropped connection does.
type cutFirstReceive struct {
	next http.RoundTripper
	done atomic.Bool
}

func (c *cutFirstReceive) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || req.Header.Get("X-Amz-Target") != "AmazonSQS.ReceiveMessage" || resp.StatusCode != http.StatusOK || c.done.Swap(true) {
		return resp, err
	}
	resp.Body = &cutBody{ReadCloser: resp.Body, left: 16}
	return resp, nil
}

var errCut = errors.New("connection cut by the test")

// cutBody reads left bytes of the body, then fails.
type cutBody struct {
	io.ReadCloser
	left int
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, errCut
	}
	n, err := b.ReadCloser.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

// TestLostReceiveResponseIsOrphaned cuts a receive's response body after
// the local server committed it: the receive is counted as orphaned and
// logged once with how many messages it may hold invisible and until
// when; the fetcher goes on polling.
func TestLostReceiveResponseIsOrphaned(t *testing.T) {
	srv, err := sqstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	q, err := srv.CreateQueue(t.Context(), "orphan", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SendBodies(t.Context(), q.URL, []string{"a", "b", "c"}, nil); err != nil {
		t.Fatal(err)
	}
	cut := &cutFirstReceive{}
	api, err := sqsapi.New(t.Context(), sqsapi.Options{EndpointURL: srv.Endpoint,
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { cut.next = rt; return cut }})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	const visibility = 30 * time.Second
	tf := &testFetcher{leases: newFakeLeases(10), health: &fakeHealth{},
		metrics: metrics.New(), out: make(chan *message.Message, 10)}
	tf.Fetcher = New(Config{QueueURL: q.URL, Fetchers: 1, WaitTime: time.Second, VisibilityTimeout: visibility,
		ErrorBackoffMin: time.Millisecond, ErrorBackoffMax: 4 * time.Millisecond},
		api, tf.leases, tf.health, tf.out, zap.New(core), tf.metrics)
	before := time.Now()
	r := tf.run(t)
	testkit.Eventually(t, 10*time.Second, "a receive after the orphaned one", func() bool { return testkit.Value(tf.metrics.ReceiveEmpty) >= 1 })
	after := time.Now()
	if err := r.stop(); err != nil {
		t.Fatalf("Run = %v; want nil", err)
	}
	cut.next.(*http.Transport).CloseIdleConnections()

	if got := testkit.Value(tf.metrics.ReceivesOrphaned); got != 1 {
		t.Errorf("orphaned receives = %v; want 1", got)
	}
	depth, err := srv.QueueDepth(t.Context(), q.URL)
	if err != nil {
		t.Fatal(err)
	}
	if depth.InFlight != 3 {
		t.Errorf("server holds %d messages in flight; want the 3 the cut receive was handed", depth.InFlight)
	}
	if got := len(tf.leases.added); got != 0 { // the fetcher has stopped
		t.Errorf("%d leases registered; want none: the receive's messages never arrived", got)
	}
	if got := logs.FilterMessageSnippet("receive failed").Len(); got != 0 {
		t.Errorf("%d generic receive failure lines; want the orphan's own line only", got)
	}
	lines := logs.FilterMessageSnippet("lost its response").All()
	if len(lines) != 1 {
		t.Fatalf("%d orphan log lines; want 1: %v", len(lines), logs.All())
	}
	fields := lines[0].ContextMap()
	if got := fields["max_messages"]; got != int64(10) {
		t.Errorf("max_messages = %v; want 10, what the receive asked for", got)
	}
	back, ok := fields["visible_again_by"].(time.Time)
	if !ok || back.Before(before.Add(visibility)) || back.After(after.Add(visibility)) {
		t.Errorf("visible_again_by = %v; want the receive's time plus the visibility timeout, in [%v, %v]",
			fields["visible_again_by"], before.Add(visibility), after.Add(visibility))
	}
	if err, _ := fields["error"].(string); !strings.Contains(err, errCut.Error()) {
		t.Errorf("error = %q; want the cut", err)
	}
}
