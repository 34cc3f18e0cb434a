// Command noophandler is the HTTP handler sqsbench runs beside the worker
// binary, in a process of its own so that the handler's CPU time is
// measured apart from the worker's. It reads each POSTed body, holds the
// request for --hold, answers 200 with no body, and reports at GET /stats
// how many requests it answered and how many were open at once at most.
// With --capacity N it serves at most N requests at once and answers 429
// Too Many Requests, at once, to any beyond them. A body that is a Lambda
// SQS event (the worker's batches) counts as its records' number of
// messages, and is answered with an empty list of failures.
// Its first stdout line is `listening http://ADDR/`; SIGTERM ends it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// Stats is what GET /stats answers.
type Stats struct {
	Handled  int64 `json:"handled"`  // requests answered 200
	Messages int64 `json:"messages"` // messages in them
	Peak     int64 `json:"peak"`
	Rejected int64 `json:"rejected"` // answered 429 (--capacity)
}

type sink struct {
	hold                          time.Duration
	capacity                      int64
	open, peak, handled, rejected atomic.Int64
	messages                      atomic.Int64
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	hold := flag.Duration("hold", 0, "how long each request is held before its answer")
	capacity := flag.Int64("capacity", 0, "serve at most this many requests at once and answer 429 to the others (0: no limit)")
	flag.Parse()
	if err := run(*addr, &sink{hold: *hold, capacity: *capacity}); err != nil {
		log.Fatal(err)
	}
}

func run(addr string, s *sink) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", s.handle)
	mux.HandleFunc("GET /stats", s.stats)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening http://%s/\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	_ = srv.Close()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *sink) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	messages, batch := int64(1), false
	if bytes.HasPrefix(body, []byte(`{"Records":`)) {
		// Counted, not decoded, as a no-op function would not read them:
		// each record has one messageId, and a body that holds the
		// string has it escaped.
		messages, batch = int64(bytes.Count(body, []byte(`{"messageId":`))), true
	}
	n := s.open.Add(1)
	if s.capacity > 0 && n > s.capacity {
		s.open.Add(-1)
		s.rejected.Add(1)
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if s.hold > 0 {
		t := time.NewTimer(s.hold)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	s.open.Add(-1)
	s.handled.Add(1)
	s.messages.Add(messages)
	if batch {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"batchItemFailures":[]}`))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *sink) stats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Stats{Handled: s.handled.Load(), Messages: s.messages.Load(), Peak: s.peak.Load(), Rejected: s.rejected.Load()})
}
