package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sqsworker/sqsworker/internal/startstop"
)

// Health answers /readyz: the worker is ready while its last receive
// succeeded within Window.
type Health struct {
	Window time.Duration
	// Paused, when set and true, says receives are paused on purpose (the
	// handler's downstream is failing): the worker stays ready.
	Paused      func() bool
	lastReceive atomic.Int64 // unix nanos of the last successful receive
	now         func() time.Time
}

// NewHealth returns a Health that is not ready until the first receive.
func NewHealth(window time.Duration) *Health {
	return &Health{Window: window, now: time.Now}
}

// ReceiveSucceeded records a successful ReceiveMessage call.
func (h *Health) ReceiveSucceeded() { h.lastReceive.Store(h.now().UnixNano()) }

// Ready reports whether the last receive succeeded recently, and why not.
func (h *Health) Ready() (bool, string) {
	last := h.lastReceive.Load()
	if last == 0 {
		return false, "no successful receive yet"
	}
	if h.Paused != nil && h.Paused() {
		return true, "receives paused: the handler's downstream is failing"
	}
	if age := h.now().Sub(time.Unix(0, last)); age > h.Window {
		return false, fmt.Sprintf("last successful receive was %s ago", age.Round(time.Millisecond))
	}
	return true, "ok"
}

// Server serves /metrics, /healthz and /readyz (Listen), or
// /debug/pprof/ (ListenPprof), on a listener of its own.
type Server struct {
	startstop.Lifecycle
	name   string // what it serves, for errors: "metrics server"
	srv    *http.Server
	ln     net.Listener
	failed chan struct{} // closed when serving failed; err says why
	err    error
}

// Listen binds addr now, so that a taken port is an error at start-up
// rather than a log line later. It serves what g gathers on /metrics, and
// ready's answer on /readyz: 200, or 503 when it is false, with the
// reason as the body.
func Listen(addr string, g prometheus.Gatherer, ready func() (bool, string)) (*Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	return listen("metrics", addr, mux)
}

// ListenPprof binds addr now and serves net/http/pprof's profiles there
// once started: on a listener of its own, so that they can stay on
// loopback while the metrics are scraped from elsewhere. The command line
// (/debug/pprof/cmdline) is not served: it may carry secrets.
func ListenPprof(addr string) (*Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not served: the command line may carry secrets", http.StatusNotFound)
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return listen("pprof", addr, mux)
}

func listen(what, addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	return &Server{name: what + " server", ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, failed: make(chan struct{})}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Start serves in the background until Stop.
func (s *Server) Start(context.Context) error {
	if err := s.BeginStart(); err != nil {
		return err
	}
	go func() {
		defer s.Stopped()
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("%s: %w", s.name, err)
			close(s.failed)
		}
	}()
	return nil
}

// Failed is closed when serving failed; Err says why.
func (s *Server) Failed() <-chan struct{} { return s.failed }

// Err is why serving failed, nil if it did not.
func (s *Server) Err() error {
	select {
	case <-s.failed:
		return s.err
	default:
		return nil
	}
}

// Stop shuts the server down gracefully, for at most shutdownTimeout or
// until ctx is done. Stopping twice, or before Start (which closes the
// listener), is harmless.
func (s *Server) Stop(ctx context.Context) error {
	first, running := s.BeginStop()
	if !running {
		if first {
			return s.ln.Close()
		}
		return nil
	}
	if !first {
		return s.Wait(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.Done()
	return err
}

// shutdownTimeout bounds how long Stop waits for scrapes in progress.
const shutdownTimeout = 5 * time.Second
