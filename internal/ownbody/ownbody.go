// Package ownbody gives the HTTP transport a request body of its own, so
// that an SDK closing its body early cannot cut the response short.
package ownbody

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Wrap returns the HTTP client an SDK client should send through. It hands the
// transport a request body of its own, read from the SDK's before the
// request is sent, because the SDK's body does not live as long as the
// transport uses it:
//
//   - http.Transport writes a body it does not know to be in memory
//     straight to the socket, then copies what is left of it to
//     io.Discard (to catch a body longer than its ContentLength). The
//     server can answer between the two.
//   - The SDK closes the body it built as soon as Do returns, that is as
//     soon as the response headers are in.
//   - Once closed, the SDK's body answers WriteTo with (0, io.EOF), which
//     io.Copy passes on as an error. If the close came between the two
//     copies, the transport takes that for a failed request write and
//     closes the connection under the response body the SDK is still
//     reading: "deserialization failed, read tcp ...: use of closed
//     network connection" on a 200. A response that already sits whole
//     in the transport's 4 KiB read buffer survives; a longer one does
//     not.
//
// For a receive that means messages SQS handed out and nobody got,
// invisible for a whole visibility timeout; a retry cannot bring them back
// (aws-sdk-go-v2 issues #1825, #2737 and #2935 report this closed
// connection; PR #2949 retries it). With a body of its own the transport
// reads to the end whatever the SDK closes. A body in memory also lets the
// transport send headers and body in one write, and resend the body on a
// redirect.
//
// A body of unknown length (a stream; SQS requests never are) is passed
// through unchanged.
func Wrap(next aws.HTTPClient) aws.HTTPClient { return client{next: next} }

type client struct{ next aws.HTTPClient }

func (c client) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength <= 0 {
		return c.next.Do(req)
	}
	buf := make([]byte, req.ContentLength)
	_, err := io.ReadFull(req.Body, buf)
	if cerr := req.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("read the %d-byte request body: %w", req.ContentLength, err)
	}
	own := *req
	own.Body = io.NopCloser(bytes.NewReader(buf))
	own.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return c.next.Do(&own)
}
