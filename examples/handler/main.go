// Command handler is an example HTTP handler service, the kind of program a
// user runs beside the worker: the worker POSTs each message body to it, 2xx
// means success and anything else means the message is retried. It is used
// by `make demo`; it is an example, not part of sqsworker.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// order is the message body the handler expects.
type order struct {
	OrderID     int64 `json:"order_id"`
	AmountCents int64 `json:"amount_cents"`
	Poison      bool  `json:"poison"`
}

// service handles orders and counts the outcomes.
type service struct {
	ok, failed atomic.Int64
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (127.0.0.1:0 picks a free port)")
	flag.Parse()
	if err := run(*addr); err != nil {
		log.Fatal(err)
	}
}

func run(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	s := &service{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", s.handle)
	mux.HandleFunc("GET /stats", s.stats)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	// The first stdout line tells a parent process where to send requests.
	fmt.Printf("listening http://%s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// In-flight requests finish so the worker sees their real outcome.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *service) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 256<<10))
	if err != nil {
		s.fail(w, "read body: "+err.Error())
		return
	}
	var o order
	if err := json.Unmarshal(body, &o); err != nil {
		s.fail(w, "unparsable order: "+err.Error())
		return
	}
	if o.Poison {
		s.fail(w, fmt.Sprintf("order %d is poison", o.OrderID))
		return
	}
	work(body)
	s.ok.Add(1)
	w.WriteHeader(http.StatusOK)
}

func (s *service) fail(w http.ResponseWriter, reason string) {
	s.failed.Add(1)
	http.Error(w, reason, http.StatusInternalServerError)
}

func (s *service) stats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int64{"ok": s.ok.Load(), "failed": s.failed.Load()})
}

// work stands in for what a real service does with an order: about a
// millisecond of CPU, then a 2–5 ms wait as if for a database write.
func work(body []byte) {
	sum := sha256.Sum256(body)
	for range 2000 {
		sum = sha256.Sum256(sum[:])
	}
	time.Sleep(2*time.Millisecond + rand.N(3*time.Millisecond))
}
