package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

// startServer serves m and h on a loopback port until the test ends.
func startServer(t *testing.T, m *Metrics, h *Health) (base string, client *http.Client) {
	t.Helper()
	m.SetReady(func() bool { ok, _ := h.Ready(); return ok })
	srv, err := Listen("127.0.0.1:0", m.Registry, h.Ready)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return serve(t, srv)
}

// serve starts srv and stops it when the test ends.
func serve(t *testing.T, srv *Server) (base string, client *http.Client) {
	t.Helper()
	if err := srv.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	transport := &http.Transport{DisableKeepAlives: true}
	client = &http.Client{Transport: transport, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := range 2 { // a second Stop is harmless
			if err := srv.Stop(ctx); err != nil {
				t.Errorf("Stop #%d = %v; want nil after a graceful stop", i+1, err)
			}
		}
		if err := srv.Err(); err != nil {
			t.Errorf("Err = %v; want nil", err)
		}
		transport.CloseIdleConnections()
	})
	return "http://" + srv.Addr(), client
}

func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestServerEndpoints(t *testing.T) {
	t.Parallel()
	m := New()
	h := NewHealth(time.Minute)
	base, client := startServer(t, m, h)

	steps := []struct {
		name     string
		before   func()
		path     string
		wantCode int
		wantBody []string
	}{
		{name: "healthz", path: "/healthz", wantCode: http.StatusOK, wantBody: []string{"ok"}},
		{name: "readyz before a receive", path: "/readyz", wantCode: http.StatusServiceUnavailable, wantBody: []string{"no successful receive yet"}},
		{name: "readyz after a receive", before: h.ReceiveSucceeded, path: "/readyz", wantCode: http.StatusOK, wantBody: []string{"ok"}},
		{
			name:     "metrics",
			before:   func() { m.MessagesReceived.Add(3) },
			path:     "/metrics",
			wantCode: http.StatusOK,
			wantBody: []string{
				"sqsworker_messages_received_total 3",
				`sqsworker_messages_processed_total{outcome="success"} 0`,
				"go_goroutines",
			},
		},
		{name: "unknown path", path: "/nope", wantCode: http.StatusNotFound},
	}
	// The steps build on each other, so they run in order.
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before()
			}
			code, body := get(t, client, base+s.path)
			if code != s.wantCode {
				t.Errorf("GET %s = %d; want %d", s.path, code, s.wantCode)
			}
			for _, want := range s.wantBody {
				if !strings.Contains(body, want) {
					t.Errorf("GET %s body does not contain %q:\n%.2000s", s.path, want, body)
				}
			}
		})
	}
}

func TestHealthReady(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		receive   bool
		elapsed   time.Duration // since the receive
		wantReady bool
		wantWhy   string
	}{
		{name: "never received", wantWhy: "no successful receive yet"},
		{name: "just received", receive: true, wantReady: true, wantWhy: "ok"},
		{name: "at the window", receive: true, elapsed: 30 * time.Second, wantReady: true, wantWhy: "ok"},
		{name: "past the window", receive: true, elapsed: 31 * time.Second, wantWhy: "last successful receive was 31s ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := testkit.NewClock(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
			h := NewHealth(30 * time.Second)
			h.now = clock.Now
			if tt.receive {
				h.ReceiveSucceeded()
			}
			clock.Add(tt.elapsed)
			ready, why := h.Ready()
			if ready != tt.wantReady || why != tt.wantWhy {
				t.Errorf("Ready() = %v, %q; want %v, %q", ready, why, tt.wantReady, tt.wantWhy)
			}
		})
	}
}

// TestReadyzFollowsReceives: /readyz, and sqsworker_ready with it,
// follow the last successful receive.
func TestReadyzFollowsReceives(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	h := NewHealth(30 * time.Second)
	h.now = clock.Now
	base, client := startServer(t, New(), h)
	readyGauge := func() string {
		_, body := get(t, client, base+"/metrics")
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, "sqsworker_ready "); ok {
				return v
			}
		}
		return "absent"
	}

	h.ReceiveSucceeded()
	if code, _ := get(t, client, base+"/readyz"); code != http.StatusOK || readyGauge() != "1" {
		t.Errorf("readyz = %d, sqsworker_ready %s right after a receive; want 200 and 1", code, readyGauge())
	}
	clock.Add(time.Minute)
	code, body := get(t, client, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "1m0s ago") {
		t.Errorf("readyz = %d %q a minute after the last receive; want 503 naming its age", code, body)
	}
	if g := readyGauge(); g != "0" {
		t.Errorf("sqsworker_ready = %s a minute after the last receive; want 0", g)
	}
	h.ReceiveSucceeded()
	if code, _ := get(t, client, base+"/readyz"); code != http.StatusOK {
		t.Errorf("readyz = %d after receives resumed; want 200", code)
	}
}

func TestListenAddressInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv, err := Listen(ln.Addr().String(), New().Registry, NewHealth(time.Minute).Ready)
	if err == nil {
		srv.ln.Close()
		t.Fatal("Listen on a taken address succeeded")
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Listen = %q; want it to name the address", err)
	}
}

func TestStopBeforeStartClosesTheListener(t *testing.T) {
	t.Parallel()
	srv, err := Listen("127.0.0.1:0", New().Registry, NewHealth(time.Minute).Ready)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	for i := range 2 {
		if err := srv.Stop(t.Context()); err != nil {
			t.Errorf("Stop #%d before Start = %v; want nil", i+1, err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the address is still taken after Stop: %v", err)
	}
	ln.Close()
}

// TestPprofOnItsOwnListener: the metrics listener serves no profiles;
// the pprof listener serves them, but not the command line, which may
// carry secrets.
func TestPprofOnItsOwnListener(t *testing.T) {
	t.Parallel()
	metricsBase, client := startServer(t, New(), NewHealth(time.Minute))
	if code, _ := get(t, client, metricsBase+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("metrics listener: GET /debug/pprof/ = %d; want 404", code)
	}
	srv, err := ListenPprof("127.0.0.1:0")
	if err != nil {
		t.Fatalf("ListenPprof: %v", err)
	}
	base, client := serve(t, srv)
	tests := []struct {
		path     string
		wantCode int
		want     string
	}{
		{path: "/debug/pprof/", wantCode: http.StatusOK, want: "goroutine"},
		{path: "/debug/pprof/goroutine?debug=1", wantCode: http.StatusOK, want: "goroutine profile"},
		{path: "/debug/pprof/cmdline", wantCode: http.StatusNotFound, want: "not served"},
		{path: "/metrics", wantCode: http.StatusNotFound},
	}
	for _, tt := range tests {
		code, body := get(t, client, base+tt.path)
		if code != tt.wantCode || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d %q; want %d and %q", tt.path, code, body, tt.wantCode, tt.want)
		}
	}
}
