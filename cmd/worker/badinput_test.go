package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestBadInputOneClearLine(t *testing.T) {
	q, err := server.CreateQueue(t.Context(), "bad-input", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.SendBodies(t.Context(), q.URL, []string{"keep-me"}, nil); err != nil {
		t.Fatal(err)
	}
	dead := "http://" + closedPort(t)
	refusing := "http://" + closedPort(t)
	missing := strings.TrimSuffix(q.URL, q.Name) + "no-such-queue"
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Close() }) // after the parallel subtests
	taken := holder.Addr().String()
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantErr  string
	}{
		{name: "unknown flag", args: []string{"--no-such-flag"}, wantCode: 2, wantErr: "flag provided but not defined: -no-such-flag"},
		{name: "negative concurrency", args: []string{"--queue-url", q.URL, "--http-url", "http://127.0.0.1:1/", "--concurrency", "-3"}, wantCode: 2, wantErr: "--concurrency is -3: it must be between 1 and 10000"},
		{name: "bad env value", args: []string{"--queue-url", q.URL}, env: []string{"SQSWORKER_CONCURRENCY=lots"}, wantCode: 2, wantErr: "SQSWORKER_CONCURRENCY"},
		{name: "lambda without function", args: []string{"--queue-url", q.URL, "--handler", "lambda"}, wantCode: 2, wantErr: "--lambda-function is required with the lambda handler"},
		{name: "fifo batch too large", args: []string{"--queue-url", q.URL + ".fifo", "--handler", "lambda", "--lambda-function", "f", "--batch-size", "11"}, wantCode: 2, wantErr: "--batch-size is 11: it must be between 1 and 10 on a FIFO queue"},
		{name: "batches hold too many messages", args: []string{"--queue-url", q.URL, "--handler", "lambda", "--lambda-function", "f", "--batch-size", "2000", "--concurrency", "16"}, wantCode: 2,
			wantErr: "--batch-size is 2000, and with --concurrency 16 the worker would hold 32000 messages at once: at most 10000; lower either"},
		{name: "batch window too long", args: []string{"--queue-url", q.URL, "--handler", "lambda", "--lambda-function", "f", "--batch-window", "6m"}, wantCode: 2, wantErr: "--batch-window is 6m0s: it must be between 0"},
		{name: "lambda function with http handler", args: []string{"--queue-url", q.URL, "--http-url", "http://127.0.0.1:1/", "--lambda-function", "f"}, wantCode: 2, wantErr: "--lambda-function is set but --handler is http"},
		{name: "unknown subcommand", args: []string{"frobnicate"}, wantCode: 2, wantErr: `unknown subcommand "frobnicate"`},
		{name: "no queue", args: []string{"--http-url", "http://127.0.0.1:1/"}, wantCode: 2, wantErr: "--queue-url or --queue is required"},
		{name: "not a queue url", args: []string{"--queue-url", "orders", "--http-url", "http://127.0.0.1:1/"}, wantCode: 2, wantErr: "is not a queue URL"},
		{name: "missing queue by url", args: []string{"--queue-url", missing, "--http-url", "http://127.0.0.1:1/"}, wantCode: 1, wantErr: "does not exist"},
		{name: "missing queue by name", args: []string{"--queue", "no-such-queue", "--http-url", "http://127.0.0.1:1/"}, wantCode: 1, wantErr: "queue no-such-queue does not exist"},
		{name: "unreachable endpoint", args: []string{"--queue-url", q.URL, "--http-url", "http://127.0.0.1:1/", "--endpoint-url", dead}, wantCode: 1, wantErr: "cannot reach " + dead},
		{name: "bad handler kind", args: []string{"--queue-url", q.URL, "--handler", "grpc"}, wantCode: 2, wantErr: `--handler is "grpc"`},
		{name: "exec command not found", args: []string{"--queue-url", q.URL, "--handler", "exec", "--exec", "/no/such/program"}, wantCode: 1, wantErr: "--exec"},
		{name: "bad metrics address", args: []string{"--queue-url", q.URL, "--http-url", refusing, "--metrics-addr", "bad:addr:here"}, wantCode: 2, wantErr: `--metrics-addr is "bad:addr:here": want host:port`},
		{name: "metrics port not a number", args: []string{"--queue-url", q.URL, "--http-url", refusing, "--metrics-addr", ":metrics"}, wantCode: 2, wantErr: "--metrics-addr"},
		{name: "metrics port taken", args: []string{"--queue-url", q.URL, "--http-url", refusing, "--metrics-addr", taken}, wantCode: 1, wantErr: "--metrics-addr cannot be served"},
		{name: "bad pprof address", args: []string{"--queue-url", q.URL, "--http-url", refusing, "--pprof-addr", "6060"}, wantCode: 2, wantErr: "--pprof-addr"},
		{name: "pprof port taken", args: []string{"--queue-url", q.URL, "--http-url", refusing, "--metrics-addr", "127.0.0.1:0", "--pprof-addr", taken}, wantCode: 1, wantErr: "--pprof-addr cannot be served"},
		{name: "http url not absolute", args: []string{"--queue-url", q.URL, "--http-url", "localhost:8080"}, wantCode: 2, wantErr: `--http-url "localhost:8080" is not an absolute http:// or https:// URL`},
		{name: "http url with password does not parse", args: []string{"--queue-url", q.URL, "--http-url", "http://robot:s3cret@[::1"}, wantCode: 2, wantErr: `--http-url "http://xxxxx@[::1" does not parse`},
		{name: "exec without the exec handler", args: []string{"--queue-url", q.URL, "--exec", "/bin/true"}, wantCode: 2, wantErr: "--exec is set but --handler is http: add --handler exec"},
		{name: "bad exec env name", args: []string{"--queue-url", q.URL, "--handler", "exec", "--exec", "/bin/true", "--exec-env", "AWS_*_KEY"}, wantCode: 2, wantErr: `--exec-env "AWS_*_KEY" is not a variable name`},
		{name: "sns topics without unwrap", args: []string{"--queue-url", q.URL, "--http-url", refusing, "--sns-topic-arn", "arn:aws:sns:eu-west-1:123456789012:t"}, wantCode: 2, wantErr: "--sns-topic-arn is set but --unwrap-sns is off"},
		{name: "bad sns topic", args: []string{"--queue-url", q.URL, "--http-url", refusing, "--unwrap-sns", "--sns-topic-arn", "orders"}, wantCode: 2, wantErr: `--sns-topic-arn "orders" is not an SNS topic ARN`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(workerBin, append([]string{"run"}, tt.args...)...)
			if tt.name == "unknown subcommand" {
				cmd = exec.Command(workerBin, tt.args...)
			}
			cmd.Env = append(append(os.Environ(), server.Env()...), tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			_ = cmd.Run()
			got := strings.TrimRight(stderr.String(), "\n")
			if code := cmd.ProcessState.ExitCode(); code != tt.wantCode {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tt.wantCode, got)
			}
			if strings.Count(got, "\n") != 0 {
				t.Errorf("stderr has %d lines, want one:\n%s", strings.Count(got, "\n")+1, got)
			}
			if strings.Contains(got, "s3cret") {
				t.Errorf("stderr %q shows the password", got)
			}
			if !strings.HasPrefix(got, "worker: ") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("stderr %q, want a 'worker: ' line containing %q", got, tt.wantErr)
			}
		})
	}
	// Nothing above may have touched the message.
	if d := depth(t, q.URL); d.Visible != 1 {
		t.Errorf("the queue's one message: visible %d, want 1", d.Visible)
	}
}

// TestRefusingHandlerLosesNothing: a handler that refuses connections is
// not a start-up error (an application may start after its worker): the
// breaker opens, the messages in hand are held and released at the stop,
// every message stays in the queue and is handled once the handler
// answers.
func TestRefusingHandlerLosesNothing(t *testing.T) {
	const n = 20
	q, sent := sendAll(t, "bad-handler", n, sqstest.QueueOptions{})
	refusing := "http://" + closedPort(t) + "/work"
	w := startWorker(t, "--queue-url", q.URL, "--http-url", refusing, "--wait-time", "1s",
		"--retry-backoff-min", "1s", "--retry-backoff-max", "1s")
	// A handler that refuses every connection is a downstream outage: the
	// worker holds what it has and stops receiving, rather than spend the
	// messages' receives.
	testkit.Eventually(t, time.Minute, "the breaker open and messages held", func() bool {
		m := w.scrape()
		return m.Value("sqsworker_downstream_state") == 2 && m.Value("sqsworker_messages_held") > 0
	})
	ready := w.ready()
	if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	logs := w.Logs()
	if !strings.Contains(logs, "downstream failing") {
		t.Errorf("no log line says the downstream is failing:\n%s", w.LastLines(40))
	}
	d := depth(t, q.URL)
	rec := newRecorder(t, nil)
	w2 := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--wait-time", "1s")
	testkit.Eventually(t, time.Minute, "every message handled once the handler answers", func() bool { c, _ := rec.snapshot(); return len(c) == n })
	w2.stop(syscall.SIGTERM, 30*time.Second)
	counts, _ := rec.snapshot()
	lost, _ := countLostAndDuplicates(sent, counts)
	t.Logf("figures: messages=%d failed_while_refused=%d ready_while_refused=%v in_queue_after=%d lost=%d",
		n, n, ready, d.Visible+d.InFlight, lost)
	if d.Visible+d.InFlight != n || lost != 0 {
		t.Errorf("in the queue after the refused run: %d, want %d; lost %d, want 0", d.Visible+d.InFlight, n, lost)
	}
}
