package handler

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/tracing"
)

const (
	// DefaultHTTPConcurrency sizes the connection pool when
	// HTTPConfig.Concurrency is zero.
	DefaultHTTPConcurrency = 10
	// UserAgent identifies the worker to the endpoint.
	UserAgent = "sqsworker"

	// errorBodyLimit bounds the excerpt of a failed response quoted in the error.
	errorBodyLimit = 256
	// drainLimit bounds how much of a response is read just to reuse the
	// connection; a larger body costs more to read than a new connection.
	drainLimit = 64 << 10
)

// HTTPConfig configures the HTTP handler.
type HTTPConfig struct {
	// URL is the absolute http or https URL each message body is POSTed to.
	// Required.
	URL string
	// Timeout bounds one request, on top of the ctx passed to Handle.
	// Defaults to 0: ctx alone bounds it.
	Timeout time.Duration
	// Concurrency is how many requests may be in flight at once; it sizes
	// the keep-alive pool so every worker reuses a connection. Set it to the
	// worker's concurrency. Defaults to DefaultHTTPConcurrency.
	Concurrency int
	// OutputInErrors quotes the start of a failed response's body in the
	// error. Defaults to false: it may carry message content, so it is
	// logged at debug level only.
	OutputInErrors bool
}

// HTTP POSTs each message to an endpoint the way Elastic Beanstalk's worker
// daemon (sqsd) does, so apps written for sqsd run unchanged.
type HTTP struct {
	// url is where requests go, without the user and password of the URL
	// given; shown is that URL as logs and errors show it, password
	// redacted; auth is the Authorization header the user and password
	// make, "" without them.
	url, shown, auth string
	timeout          time.Duration
	outputInErrors   bool
	// send sends each request: the transport itself. No http.Client sits
	// in front of it: a redirect is a failure (its response is returned
	// as it is, as a Client told http.ErrUseLastResponse would), and a
	// Client would copy every request's headers for redirects it never
	// follows.
	send      http.RoundTripper
	transport *http.Transport
	logger    *zap.Logger
	now       func() time.Time
	// queue caches the last queue URL's name for X-Aws-Sqsd-Queue.
	queue atomic.Pointer[namedQueue]
}

// namedQueue is a queue URL and its name.
type namedQueue struct{ url, name string }

// ParseURL parses the URL of HTTPConfig, which must be an absolute http or
// https URL. Its error starts with the URL, quoted and redacted
// (RedactURL).
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			// url.Parse's reasons quote parts of the URL, which may be
			// parts of a password.
			return nil, fmt.Errorf("%q does not parse as a URL", RedactURL(raw))
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message quotes the whole URL once more
		}
		return nil, fmt.Errorf("%q does not parse as a URL: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute http:// or https:// URL, such as http://localhost:8080/work", RedactURL(raw))
	}
	return u, nil
}

// RedactURL is raw with its user information (user and password) replaced
// by xxxxx, even when raw does not parse as a URL: a token may sit in the
// user name as well as in the password.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Opaque == "" {
		if u.User != nil {
			u.User = url.User("xxxxx")
		}
		return u.String()
	}
	// Not a URL with an authority: whatever comes before its last @ may
	// be a password.
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw[:at], "://"); i >= 0 {
		start = i + len("://")
	}
	return raw[:start] + "xxxxx" + raw[at:]
}

// NewHTTP validates cfg and builds the handler. A user and password in
// the URL are sent as basic authentication and never shown.
func NewHTTP(cfg HTTPConfig, logger *zap.Logger) (*HTTP, error) {
	u, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("http handler: URL %w", err)
	}
	shown, auth := RedactURL(cfg.URL), ""
	if u.User != nil {
		password, _ := u.User.Password()
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+password))
		u.User = nil
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("http handler: Timeout %s: must be 0 (no limit of its own) or positive", cfg.Timeout)
	}
	if cfg.Concurrency < 0 {
		return nil, fmt.Errorf("http handler: Concurrency %d: must be 1 or more", cfg.Concurrency)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultHTTPConcurrency
	}

	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(t.MaxIdleConns, cfg.Concurrency)
	t.MaxIdleConnsPerHost = cfg.Concurrency
	// One connection per running handler: with --concurrency 1000 the
	// default 4 KiB buffers each way are 8 MiB. Replies are a status line
	// and a few headers; bodies up to 256 KiB still stream through.
	t.ReadBufferSize, t.WriteBufferSize = 1<<10, 2<<10
	t.MaxConnsPerHost = cfg.Concurrency
	// A redirect would turn the POST into a GET whose 200 deletes a
	// message nobody processed: the transport does not follow it, and
	// Handle reports its status as a failure.
	return &HTTP{
		url:            u.String(),
		shown:          shown,
		auth:           auth,
		outputInErrors: cfg.OutputInErrors,
		timeout:        cfg.Timeout,
		send:           t,
		transport:      t,
		logger:         logger.Named("http"),
		now:            time.Now,
	}, nil
}

// Handle POSTs msg.Body. A 2xx response is success; 429 or 503 with a
// Retry-After header returns a *RetryAfterError.
func (h *HTTP) Handle(ctx context.Context, msg *message.Message) error {
	reqCtx := ctx
	if h.timeout > 0 {
		var cancel context.CancelFunc
		reqCtx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, h.url, strings.NewReader(msg.Body))
	if err != nil {
		return fmt.Errorf("build request for message %s to %s: %w", msg.ID, h.shown, err)
	}
	req.Header = h.headers(msg)
	if tc, ok := tracing.For(ctx, msg); ok {
		req.Header.Set("traceparent", tc.TraceParent)
		if tc.TraceState != "" {
			req.Header.Set("tracestate", tc.TraceState)
		}
	}

	start := h.now()
	resp, err := h.send.RoundTrip(req)
	if err != nil {
		if h.timeout > 0 && ctx.Err() == nil && errors.Is(reqCtx.Err(), context.DeadlineExceeded) {
			return Unavailable(fmt.Errorf("post message %s to %s: no response within %s (the handler's Timeout): %w", msg.ID, h.shown, h.timeout, err), false)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("post message %s to %s: %w", msg.ID, h.shown, err)
		}
		return Unavailable(fmt.Errorf("post message %s to %s: %w", msg.ID, h.shown, err), false)
	}
	defer func() {
		// Reading to EOF lets the transport put the connection back in the pool.
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		_ = resp.Body.Close()
	}()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if ce := h.logger.Check(zap.DebugLevel, "message delivered"); ce != nil {
			ce.Write(zap.String("message_id", msg.ID), zap.Int("status", resp.StatusCode), zap.Duration("duration", h.now().Sub(start)))
		}
		return nil
	}

	return classifyStatus(resp, h.failed(msg, resp), h.now())
}

// DeadLetterHeader, on a response that is not 2xx, says the message can
// never succeed: the worker sends it to the dead-letter queue at once,
// with the header's value as the reason.
const DeadLetterHeader = "X-Sqsworker-Dead-Letter"

// classifyStatus marks a failed response: the dead-letter header asks for
// the dead-letter queue; 429 and 503 ask to slow down (with Retry-After,
// for how long); 502 and 504 say the downstream is not there. Any other
// status is the message's failure.
func classifyStatus(resp *http.Response, err error, now time.Time) error {
	if reason, ok := resp.Header[http.CanonicalHeaderKey(DeadLetterHeader)]; ok {
		return DeadLetter(strings.Join(reason, ", "), err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			err = &RetryAfterError{After: d, Err: fmt.Errorf("%w (retry after %s)", err, d)}
		}
		return Unavailable(err, true)
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return Unavailable(err, false)
	}
	return err
}

// failed is the error of a response that is not a success. The start of
// its body is logged at debug level, or quoted in the error with
// OutputInErrors: it may carry message content.
func (h *HTTP) failed(msg *message.Message, resp *http.Response) error {
	what := fmt.Sprintf("post message %s to %s: status %s", msg.ID, h.shown, resp.Status)
	const notQuoted = "; body not quoted" // it may quote the message
	ce := h.logger.Check(zap.DebugLevel, "response not a success")
	if ce == nil && !h.outputInErrors {
		return errors.New(what + notQuoted)
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	excerpt := strings.ToValidUTF8(strings.TrimSpace(string(raw)), "\uFFFD")
	if ce != nil {
		ce.Write(zap.String("message_id", msg.ID), zap.Int("status", resp.StatusCode), zap.String("body", excerpt))
	}
	if h.outputInErrors {
		return fmt.Errorf("%s: %q", what, excerpt)
	}
	return errors.New(what + notQuoted)
}

// Close releases idle keep-alive connections. Handle may still be called
// afterwards; it opens new ones.
func (h *HTTP) Close() {
	h.transport.CloseIdleConnections()
}

// headers are what sqsd sends, so apps that read these headers work. The
// map is sized once and every header's one value shares one array: a
// message's headers cost two allocations, not one per header.
func (h *HTTP) headers(msg *message.Message) http.Header {
	n := 8 + len(msg.Attributes)
	hdr := make(http.Header, n)
	vals := make([]string, 0, n)
	set := func(canonicalKey, v string) {
		vals = append(vals, v)
		hdr[canonicalKey] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set("User-Agent", UserAgent)
	if h.auth != "" {
		set("Authorization", h.auth)
	}
	contentType := "application/json"
	if ct, ok := msg.StringAttribute("Content-Type"); ok && validHeaderValue(ct) {
		contentType = ct
	}
	set("Content-Type", contentType)
	set("X-Aws-Sqsd-Msgid", msg.ID)
	set("X-Aws-Sqsd-Queue", h.queueName(msg.QueueURL))
	set("X-Aws-Sqsd-First-Received-At", msg.FirstReceivedAt.UTC().Format(time.RFC3339))
	set("X-Aws-Sqsd-Receive-Count", strconv.Itoa(msg.ReceiveCount))
	if sender := msg.SystemAttributes["SenderId"]; sender != "" {
		set("X-Aws-Sqsd-Sender-Id", sender)
	}
	if len(msg.Attributes) == 0 {
		return hdr
	}

	names := make([]string, 0, len(msg.Attributes))
	for name := range msg.Attributes {
		names = append(names, name)
	}
	sort.Strings(names) // so a skipped attribute is logged in a stable order
	for _, name := range names {
		v, ok := msg.StringAttribute(name)
		if !ok {
			continue // binary attributes have no header form in sqsd either
		}
		// An invalid header would make the client refuse the whole request,
		// failing the message forever; drop the attribute instead.
		if !validHeaderName(name) || !validHeaderValue(v) {
			h.logger.Debug("attribute not sent as a header: name or value not allowed in HTTP",
				zap.String("message_id", msg.ID), zap.String("attribute", name))
			continue
		}
		set(http.CanonicalHeaderKey("X-Aws-Sqsd-Attr-"+name), v)
	}
	return hdr
}

// queueName is queueName(queueURL), remembered for the last queue URL:
// every message of a worker comes from the same queue.
func (h *HTTP) queueName(queueURL string) string {
	if q := h.queue.Load(); q != nil && q.url == queueURL {
		return q.name
	}
	name := queueName(queueURL)
	h.queue.Store(&namedQueue{url: queueURL, name: name})
	return name
}

// queueName returns the last path segment of a queue URL, as sqsd does.
func queueName(queueURL string) string {
	p := queueURL
	if u, err := url.Parse(queueURL); err == nil {
		p = u.Path
	}
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return ""
	}
	return path.Base(p)
}

// parseRetryAfter reads either form RFC 9110 allows: delay-seconds or an
// HTTP date. A date in the past means "now".
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alnum && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
