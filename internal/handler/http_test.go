package handler

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sqsworker/sqsworker/internal/message"
)

func newTestHTTP(t *testing.T, url string, timeout time.Duration) *HTTP {
	t.Helper()
	return newTestHTTPWith(t, HTTPConfig{URL: url, Timeout: timeout}, zap.NewNop())
}

func newTestHTTPWith(t *testing.T, cfg HTTPConfig, logger *zap.Logger) *HTTP {
	t.Helper()
	cfg.Concurrency = 2
	h, err := NewHTTP(cfg, logger)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func TestHTTPHeaders(t *testing.T) {
	t.Parallel()
	withCT := testMessage()
	withCT.Attributes["Content-Type"] = types.MessageAttributeValue{DataType: ptr("String"), StringValue: ptr("text/plain")}
	noSender := testMessage()
	noSender.SystemAttributes = nil

	tests := []struct {
		name   string
		msg    *message.Message
		want   map[string]string
		absent []string
	}{
		{
			name: "sqsd headers",
			msg:  testMessage(),
			want: map[string]string{
				"User-Agent":                   "sqsworker",
				"Content-Type":                 "application/json",
				"X-Aws-Sqsd-Msgid":             "msg-1",
				"X-Aws-Sqsd-Queue":             "orders",
				"X-Aws-Sqsd-First-Received-At": "2025-01-02T02:04:05Z",
				"X-Aws-Sqsd-Receive-Count":     "3",
				"X-Aws-Sqsd-Sender-Id":         "AIDAEXAMPLE",
				"X-Aws-Sqsd-Attr-Tenant":       "acme",
				"X-Aws-Sqsd-Attr-Priority":     "7",
			},
			absent: []string{"X-Aws-Sqsd-Attr-Blob", "X-Aws-Sqsd-Attr-Bad", "Injected"},
		},
		{
			name: "content type from attribute",
			msg:  withCT,
			want: map[string]string{"Content-Type": "text/plain", "X-Aws-Sqsd-Attr-Content-Type": "text/plain"},
		},
		{
			name:   "no sender id",
			msg:    noSender,
			absent: []string{"X-Aws-Sqsd-Sender-Id"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			type seen struct {
				method string
				header http.Header
				body   string
			}
			got := make(chan seen, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- seen{r.Method, r.Header.Clone(), string(b)}
			}))
			t.Cleanup(srv.Close)

			h := newTestHTTP(t, srv.URL+"/work", 0)
			if err := h.Handle(t.Context(), tt.msg); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			s := <-got
			if s.method != http.MethodPost || s.body != tt.msg.Body {
				t.Errorf("got %s %q; want POST %q", s.method, s.body, tt.msg.Body)
			}
			for k, v := range tt.want {
				if g := s.header.Get(k); g != v {
					t.Errorf("header %s = %q; want %q", k, g, v)
				}
			}
			for _, k := range tt.absent {
				if g, ok := s.header[http.CanonicalHeaderKey(k)]; ok {
					t.Errorf("header %s = %q; want absent", k, g)
				}
			}
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		wantErr    []string // substrings; nil means success
		wantRetry  time.Duration
		wantHasRA  bool
		maxErrSize int
		// bodyOut: the body is left out of the error and logged at debug level.
		bodyOut bool
	}{
		{name: "200", status: 200, body: strings.Repeat("x", 100<<10)},
		{name: "204", status: 204},
		{name: "500", status: 500, body: "database down\n", wantErr: []string{"status 500 Internal Server Error", `"database down"`, "msg-1"}},
		{name: "500 body at debug only", status: 500, body: "card 4242\n", wantErr: []string{"status 500 Internal Server Error", "body not quoted"}, bodyOut: true},
		{name: "long body truncated", status: 400, body: strings.Repeat("y", 10000), wantErr: []string{"status 400"}, maxErrSize: 256 + 200},
		{name: "429 seconds", status: 429, header: map[string]string{"Retry-After": "30"}, wantErr: []string{"status 429"}, wantRetry: 30 * time.Second, wantHasRA: true},
		{name: "503 date", status: 503, header: map[string]string{"Retry-After": now.Add(2 * time.Minute).Format(http.TimeFormat)}, wantErr: []string{"status 503"}, wantRetry: 2 * time.Minute, wantHasRA: true},
		{name: "503 date in past", status: 503, header: map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, wantErr: []string{"status 503"}, wantRetry: 0, wantHasRA: true},
		{name: "429 without retry-after", status: 429, wantErr: []string{"status 429"}},
		{name: "429 bad retry-after", status: 429, header: map[string]string{"Retry-After": "soon"}, wantErr: []string{"status 429"}},
		{name: "500 ignores retry-after", status: 500, header: map[string]string{"Retry-After": "30"}, wantErr: []string{"status 500"}},
		{name: "redirect is a failure", status: 302, header: map[string]string{"Location": "/elsewhere"}, wantErr: []string{"status 302"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			core, logs := observer.New(zapcore.DebugLevel)
			h := newTestHTTPWith(t, HTTPConfig{URL: srv.URL, OutputInErrors: !tt.bodyOut}, zap.New(core))
			h.now = func() time.Time { return now }

			err := h.Handle(t.Context(), testMessage())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Handle: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Handle succeeded; want error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.bodyOut {
				debug := logs.FilterMessage("response not a success").All()
				if strings.Contains(err.Error(), "4242") || len(debug) != 1 || debug[0].ContextMap()["body"] != strings.TrimSpace(tt.body) {
					t.Errorf("error %q, debug lines %v; want the body in one debug line and not in the error", err, debug)
				}
			}
			if tt.maxErrSize > 0 && len(err.Error()) > tt.maxErrSize {
				t.Errorf("error is %d bytes; want at most %d", len(err.Error()), tt.maxErrSize)
			}
			d, ok := RetryAfter(err)
			if ok != tt.wantHasRA || d != tt.wantRetry {
				t.Errorf("RetryAfter = %v, %v; want %v, %v", d, ok, tt.wantRetry, tt.wantHasRA)
			}
		})
	}
}

// TestHTTPURLCredentials: a user and password in the URL are sent as
// basic authentication, and no error quotes them.
func TestHTTPURLCredentials(t *testing.T) {
	t.Parallel()
	auth := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Get("Authorization")
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	withPassword := strings.Replace(srv.URL, "http://", "http://robot:s3cret@", 1)
	closed := httptest.NewServer(http.NotFoundHandler())
	refused := strings.Replace(closed.URL, "http://", "http://robot:s3cret@", 1)
	closed.Close()

	for _, u := range []string{withPassword, refused} {
		err := newTestHTTP(t, u, 0).Handle(t.Context(), testMessage())
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "xxxxx@127.0.0.1") {
			t.Errorf("Handle error = %v; want one naming the URL with its user and password redacted", err)
		}
	}
	if got, want := <-auth, "Basic "+base64.StdEncoding.EncodeToString([]byte("robot:s3cret")); got != want {
		t.Errorf("Authorization = %q; want %q", got, want)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "no user", in: "http://app:8080/work?a=b", want: "http://app:8080/work?a=b"},
		{name: "user and password", in: "https://robot:s3cret@app/work", want: "https://xxxxx@app/work"},
		{name: "token as user", in: "https://s3cret@app/", want: "https://xxxxx@app/"},
		{name: "does not parse", in: "http://robot:s3/cret@app:port/", want: "http://xxxxx@app:port/"},
		{name: "no scheme", in: "robot:s3cret@app", want: "xxxxx@app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := RedactURL(tt.in); got != tt.want {
				t.Errorf("RedactURL(%q) = %q; want %q", tt.in, got, tt.want)
			}
			if _, err := ParseURL(tt.in); err != nil && strings.Contains(err.Error(), "s3") {
				t.Errorf("ParseURL(%q) error %q quotes the password", tt.in, err)
			}
		})
	}
}

// TestHTTPReusesConnections checks that responses are drained, so a
// keep-alive connection serves every request.
func TestHTTPReusesConnections(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, strings.Repeat("z", 4096))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	h := newTestHTTP(t, srv.URL, 0)
	for range 5 {
		if err := h.Handle(t.Context(), testMessage()); err == nil {
			t.Fatal("Handle succeeded; want status 500 error")
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("server saw %d connections; want 1", n)
	}
}

func TestHTTPTransportErrors(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices a closed connection only once the body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) }) // runs first, so Close never waits on a handler

	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		wantErr []string
		wantIs  error
	}{
		{name: "connection refused", url: closedURL, wantErr: []string{"post message msg-1 to " + closedURL, "refused"}},
		{name: "timeout", url: slow.URL, timeout: 50 * time.Millisecond, wantErr: []string{"Timeout", slow.URL}, wantIs: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newTestHTTP(t, tt.url, tt.timeout)
			err := h.Handle(t.Context(), testMessage())
			if err == nil {
				t.Fatal("Handle succeeded; want error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
		})
	}
}
