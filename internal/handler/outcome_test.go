package handler

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// What each handler says about the downstream: the worker holds messages
// through the downstream's failures and dead-letters what a handler marks.
func TestHTTPOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                    string
		status                  int
		header                  http.Header
		unavailable, overloaded bool
		deadLetter              string
	}{
		{name: "500 is the message's", status: 500},
		{name: "422 is the message's", status: 422},
		{name: "429 asks to slow down", status: 429, unavailable: true, overloaded: true},
		{name: "503 asks to slow down", status: 503, unavailable: true, overloaded: true},
		{name: "503 with Retry-After", status: 503, header: http.Header{"Retry-After": {"2"}}, unavailable: true, overloaded: true},
		{name: "502 is unavailable", status: 502, unavailable: true},
		{name: "504 is unavailable", status: 504, unavailable: true},
		{name: "dead-letter header", status: 422, header: http.Header{DeadLetterHeader: {"bad-schema"}}, deadLetter: "bad-schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			err := newTestHTTP(t, srv.URL, time.Second).Handle(context.Background(), testMessage())
			if err == nil {
				t.Fatal("no error")
			}
			u, o := IsUnavailable(err)
			reason, dl := DeadLetterReason(err)
			if u != tt.unavailable || o != tt.overloaded || reason != tt.deadLetter || dl != (tt.deadLetter != "") {
				t.Errorf("unavailable %v overloaded %v dead-letter %q; want %v %v %q", u, o, reason, tt.unavailable, tt.overloaded, tt.deadLetter)
			}
			if _, ok := RetryAfter(err); ok != (tt.header.Get("Retry-After") != "") {
				t.Errorf("RetryAfter found %v", ok)
			}
		})
	}
}

func TestHTTPRefusedIsUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	err = newTestHTTP(t, "http://"+addr+"/", time.Second).Handle(context.Background(), testMessage())
	if u, _ := IsUnavailable(err); !u {
		t.Errorf("refused connection: %v, want unavailable", err)
	}
}

func TestExecExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                    string
		script                  string
		unavailable, deadLetter bool
	}{
		{"exit 1 is the message's", "exit 1", false, false},
		{"exit 65 dead-letters", "exit 65", false, true},
		{"exit 75 asks to slow down", "exit 75", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, _ := newTestExec(t, ExecConfig{Argv: shell(tt.script)})
			err := e.Handle(context.Background(), testMessage())
			if err == nil {
				t.Fatal("no error")
			}
			u, o := IsUnavailable(err)
			_, dl := DeadLetterReason(err)
			if u != tt.unavailable || o != tt.unavailable || dl != tt.deadLetter {
				t.Errorf("unavailable %v overloaded %v dead-letter %v; want %v %v %v", u, o, dl, tt.unavailable, tt.unavailable, tt.deadLetter)
			}
		})
	}
}
