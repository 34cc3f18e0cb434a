package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// endpoint is the handler's downstream in the downstream-protection tests:
// an HTTP server on a loopback port that a test can make fail (every call
// answers one status) or take down (nothing listens: connections are
// refused) and bring back on the same port. It records every call it
// answers.
type endpoint struct {
	t    *testing.T
	addr string
	// answer decides the status of a call while the endpoint works; it
	// may set response headers and take its time.
	answer func(body string, h http.Header) int

	mu       sync.Mutex
	failWith int // every call answers this status at once, when not 0
	srv      *http.Server
	serving  sync.WaitGroup
	calls    []call
	accepted []string       // bodies in the order of their first 2xx answer
	counts   map[string]int // 2xx answers per body
	waiters  []acceptWaiter
}

// call is one request the endpoint answered: when it arrived, its body,
// the status it got.
type call struct {
	at     time.Time
	body   string
	status int
}

type acceptWaiter struct {
	n    int
	done chan struct{}
}

// newEndpoint starts an endpoint on a free loopback port; nil answer
// accepts every call at once.
func newEndpoint(t *testing.T, answer func(body string, h http.Header) int) *endpoint {
	t.Helper()
	if answer == nil {
		answer = func(string, http.Header) int { return http.StatusOK }
	}
	e := &endpoint{t: t, addr: "127.0.0.1:0", answer: answer, counts: map[string]int{}}
	e.up()
	t.Cleanup(func() {
		e.down()
		e.serving.Wait()
	})
	return e
}

// takes is an answer for work that takes d and succeeds: the time is the
// handler's own work under test, not a test waiting for something.
func takes(d time.Duration) func(string, http.Header) int {
	work := working(d)
	return func(body string, _ http.Header) int { return work(body, 0) }
}

func (e *endpoint) url() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return "http://" + e.addr + "/"
}

// up listens again, on the port it had (a free one the first time).
func (e *endpoint) up() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return
	}
	l, err := net.Listen("tcp", e.addr)
	if err != nil {
		e.t.Fatalf("endpoint: listen on %s again: %v", e.addr, err)
	}
	e.addr = l.Addr().String()
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	e.serving.Add(1)
	go func(srv *http.Server) {
		defer e.serving.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.t.Errorf("endpoint: serve: %v", err)
		}
	}(e.srv)
}

// down closes the listener and every connection: from now on connections
// to the port are refused, as when the downstream's process is gone.
func (e *endpoint) down() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// fail makes every call answer status at once; 0 makes the endpoint work
// again.
func (e *endpoint) fail(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failWith = status
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	b, _ := io.ReadAll(r.Body)
	body := string(b)
	e.mu.Lock()
	status := e.failWith
	e.mu.Unlock()
	if status == 0 {
		status = e.answer(body, w.Header())
	}
	e.mu.Lock()
	e.calls = append(e.calls, call{at: at, body: body, status: status})
	if status >= 200 && status <= 299 {
		if e.counts[body]++; e.counts[body] == 1 {
			e.accepted = append(e.accepted, body)
		}
		kept := e.waiters[:0]
		for _, wt := range e.waiters {
			if len(e.accepted) >= wt.n {
				close(wt.done)
			} else {
				kept = append(kept, wt)
			}
		}
		e.waiters = kept
	}
	e.mu.Unlock()
	w.WriteHeader(status)
}

// reached is closed once n distinct bodies were accepted.
func (e *endpoint) reached(n int) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	done := make(chan struct{})
	if len(e.accepted) >= n {
		close(done)
	} else {
		e.waiters = append(e.waiters, acceptWaiter{n: n, done: done})
	}
	return done
}

// awaitAccepted fails the test unless n distinct bodies are accepted
// within d.
func (e *endpoint) awaitAccepted(n int, d time.Duration) {
	e.t.Helper()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.reached(n):
	case <-t.C:
		e.t.Fatalf("endpoint: %d bodies accepted within %s, want %d", e.distinct(), d, n)
	}
}

// distinct is the number of bodies accepted at least once.
func (e *endpoint) distinct() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.accepted)
}

// snapshot copies what the endpoint recorded.
func (e *endpoint) snapshot() (calls []call, accepted []string, counts map[string]int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	counts = make(map[string]int, len(e.counts))
	for k, v := range e.counts {
		counts[k] = v
	}
	return append([]call(nil), e.calls...), append([]string(nil), e.accepted...), counts
}

// callsPerBody counts the calls each body got, whatever their answer.
func callsPerBody(calls []call) map[string]int {
	n := map[string]int{}
	for _, c := range calls {
		n[c.body]++
	}
	return n
}

// logLine is what the downstream tests read of a worker's JSON log line.
type logLine struct {
	Level     string `json:"level"`
	Logger    string `json:"logger"`
	Msg       string `json:"msg"`
	MessageID string `json:"message_id"`
	// ReceiveCount is the message's, on the lines about one message.
	ReceiveCount int `json:"receive_count"`
}

// logLines parses the worker's JSON log; lines that are not JSON are
// skipped.
func logLines(logs string) []logLine {
	var out []logLine
	for _, l := range strings.Split(logs, "\n") {
		var line logLine
		if json.Unmarshal([]byte(l), &line) == nil && line.Msg != "" {
			out = append(out, line)
		}
	}
	return out
}
