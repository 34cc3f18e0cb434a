package sqsapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sqsworker/sqsworker/internal/ownbody"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) { testkit.WrapTestMain(m) }

// fillQueue creates a queue on server holding n messages of size bytes
// each.
func fillQueue(t *testing.T, server *sqstest.Server, prefix string, n, size int) string {
	t.Helper()
	q, err := server.CreateQueue(t.Context(), prefix, sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = strings.Repeat("x", size)
	}
	if err := server.SendBodies(t.Context(), q.URL, bodies, nil); err != nil {
		t.Fatal(err)
	}
	return q.URL
}

// gatedConn holds back the return of every Write that ends a request (a
// JSON body ends with "}") until release is closed: the bytes are on the
// wire and the server answers, while the transport's write loop waits
// inside the write, as a loaded machine's scheduler may leave it. It
// closes closed when the transport closes it.
type gatedConn struct {
	net.Conn
	release <-chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func (c *gatedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if bytes.HasSuffix(p, []byte("}")) {
		<-c.release
	}
	return n, err
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// within waits for ch for at most 10 seconds.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// TestRequestBodyOutlivesTheSDKsClose replays, deterministically, how a
// receive loses its response. The transport's write loop is held right
// after the request's last byte went out; the server answers, the SDK's
// HTTP handler returns and closes the request body it built; only then
// does the write loop go on, to look for body bytes beyond ContentLength.
// On the SDK's own body that look fails with io.EOF, the transport takes
// it for a failed write and closes the connection while the response
// body (ten messages of 2 KiB, more than the transport has buffered) is
// still being read: the messages are in flight at the server and lost to
// the client. With ownbody.Wrap the transport reads a body of its own, the
// write succeeds and the ten messages arrive.
//
// (The SDK's body with its WriteTo hidden behind a plain ReadCloser also
// gets through, but only because Read after Close happens to answer
// io.EOF, which io.Copy takes for the end of the body: the transport
// still reads a body the SDK has closed.)
func TestRequestBodyOutlivesTheSDKsClose(t *testing.T) {
	tests := []struct {
		name string
		// wrap is what the SQS client's HTTP client is built with.
		wrap         func(aws.HTTPClient) aws.HTTPClient
		wantWriteErr error
	}{
		{name: "the SDK's body as it is", wrap: func(c aws.HTTPClient) aws.HTTPClient { return c }, wantWriteErr: io.EOF},
		{name: "the SDK's body without its WriteTo", wrap: func(c aws.HTTPClient) aws.HTTPClient {
			return smithyhttp.ClientDoFunc(func(r *http.Request) (*http.Response, error) {
				r.Body = struct{ io.ReadCloser }{r.Body}
				return c.Do(r)
			})
		}},
		{name: "a body of the transport's own", wrap: ownbody.Wrap},
	}
	server, err := sqstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Stop()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := fillQueue(t, server, "body", 10, 2048)
			release := make(chan struct{})
			conns := make(chan *gatedConn, 1)
			tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				g := &gatedConn{Conn: c, release: release, closed: make(chan struct{})}
				conns <- g
				return g, nil
			}}
			defer tr.CloseIdleConnections()
			wrote := make(chan error, 1)
			traced := smithyhttp.ClientDoFunc(func(r *http.Request) (*http.Response, error) {
				trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) { wrote <- i.Err }}
				return (&http.Client{Transport: tr}).Do(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
			})
			var writeErr error
			// Innermost in the deserialize step: runs once the SDK's
			// HTTP handler returned (having closed its request body)
			// and before the response body is read.
			afterSend := middleware.DeserializeMiddlewareFunc("afterSend",
				func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleDeserialize(ctx, in)
					close(release)
					if writeErr = within(t, wrote, "the request write to end"); writeErr != nil {
						within(t, within(t, conns, "a connection").closed, "the transport to close the connection")
					}
					return out, md, err
				})
			out, err := sqstest.NewClient(server.Endpoint).ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
				QueueUrl: aws.String(url), MaxNumberOfMessages: 10,
			}, func(o *sqs.Options) {
				o.RetryMaxAttempts = 1
				o.HTTPClient = tt.wrap(traced)
				o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
					return s.Deserialize.Add(afterSend, middleware.After)
				})
			})
			if !errors.Is(writeErr, tt.wantWriteErr) || (tt.wantWriteErr == nil) != (writeErr == nil) {
				t.Fatalf("request write ended with %v, want %v", writeErr, tt.wantWriteErr)
			}
			depth, derr := server.QueueDepth(t.Context(), url)
			if derr != nil {
				t.Fatal(derr)
			}
			if depth.InFlight != 10 {
				t.Errorf("server holds %d messages in flight, want the 10 it handed out", depth.InFlight)
			}
			if tt.wantWriteErr == nil {
				if err != nil {
					t.Fatalf("receive: %v", err)
				}
				if len(out.Messages) != 10 {
					t.Errorf("received %d messages, want 10", len(out.Messages))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "use of closed network connection") {
				t.Fatalf("receive error %v, want the closed connection under the response body", err)
			}
			if !IsResponseLost(err) {
				t.Errorf("IsResponseLost(%v) = false, want true: the server answered 200", err)
			}
		})
	}
}
