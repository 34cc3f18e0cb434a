package handler

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

func newTestExec(t *testing.T, cfg ExecConfig) (*Exec, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	e, err := NewExec(cfg, zap.New(core))
	if err != nil {
		t.Fatalf("NewExec: %v", err)
	}
	return e, logs
}

func shell(script string, args ...string) []string {
	return append([]string{"/bin/sh", "-c", script, "sh"}, args...)
}

func TestExecRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		script     string
		body       string
		limit      int
		inErrors   bool     // OutputInErrors
		wantStdout string   // on success, as logged
		wantErr    []string // substrings; nil means success
	}{
		{
			name:       "stdin",
			script:     `cat`,
			body:       "hello body",
			wantStdout: "hello body",
		},
		{
			name: "environment",
			script: `printf '%s|%s|%s|%s|%s|%s|%s|%s' "$SQS_MESSAGE_ID" "$SQS_RECEIVE_COUNT" "$SQS_QUEUE_URL" ` +
				`"$SQS_FIRST_RECEIVED_AT" "$SQS_MESSAGE_GROUP_ID" "$SQS_ATTR_TENANT" "$SQS_ATTR_X_TRACE_ID" "${SQS_ATTR_BLOB-unset}"`,
			wantStdout: "msg-1|3|https://sqs.eu-west-1.amazonaws.com/123456789012/orders|2025-01-02T02:04:05Z|group-a|acme|t-1|unset",
		},
		{
			name:       "gets the worker's PATH",
			script:     `printf '%s' "$PATH"`,
			wantStdout: os.Getenv("PATH"),
		},
		{
			name:   "body not read",
			script: `exit 0`,
			body:   strings.Repeat("b", 1<<20),
		},
		{
			name:     "exit 1",
			script:   `echo partial; echo "cannot parse" >&2; exit 1`,
			inErrors: true,
			wantErr:  []string{"exit code 1", "cannot parse", "partial", "msg-1", "/bin/sh"},
		},
		{
			name:     "output truncated",
			script:   `i=0; while [ $i -lt 500 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 7`,
			limit:    64,
			inErrors: true,
			wantErr:  []string{"exit code 7", "line 0", "line 499", "bytes omitted"},
		},
		{
			name:    "killed by signal",
			script:  `kill -KILL $$`,
			wantErr: []string{"killed by signal 9 (killed)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, logs := newTestExec(t, ExecConfig{Argv: shell(tt.script), OutputLimit: tt.limit, OutputInErrors: tt.inErrors})
			msg := testMessage()
			msg.Body = tt.body
			msg.Attributes["x-trace.id"] = types.MessageAttributeValue{DataType: ptr("String"), StringValue: ptr("t-1")}

			err := e.Handle(t.Context(), msg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Handle: %v", err)
				}
				entries := logs.FilterMessage("command succeeded").All()
				if len(entries) != 1 {
					t.Fatalf("got %d success log entries; want 1", len(entries))
				}
				if got := entries[0].ContextMap()["stdout"]; got != tt.wantStdout {
					t.Errorf("stdout = %q; want %q", got, tt.wantStdout)
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
			if tt.limit > 0 && len(err.Error()) > 4*tt.limit+200 {
				t.Errorf("error is %d bytes; want output truncated to about %d", len(err.Error()), tt.limit)
			}
		})
	}
}

// TestExecOutputLoggedAtDebugOnly: without OutputInErrors, what the
// command wrote (message content, often) stays out of its error, which the
// worker logs at info level, and goes to a debug line.
func TestExecOutputLoggedAtDebugOnly(t *testing.T) {
	t.Parallel()
	e, logs := newTestExec(t, ExecConfig{Argv: shell(`echo "card 4242" >&2; echo "name Ada"; exit 3`)})
	err := e.Handle(t.Context(), testMessage())
	if err == nil || !strings.Contains(err.Error(), "exit code 3") || !strings.Contains(err.Error(), "output not quoted") {
		t.Fatalf("Handle error = %v; want exit code 3, saying the output is not quoted", err)
	}
	if strings.Contains(err.Error(), "4242") || strings.Contains(err.Error(), "Ada") {
		t.Errorf("error %q quotes the command's output", err)
	}
	entries := logs.FilterMessage("command failed").All()
	if len(entries) != 1 || entries[0].Level != zapcore.DebugLevel {
		t.Fatalf("got %d 'command failed' entries %v; want 1 at debug level", len(entries), entries)
	}
	if got := entries[0].ContextMap(); got["stderr"] != "card 4242\n" || got["stdout"] != "name Ada\n" {
		t.Errorf("debug line has stderr %q stdout %q; want the command's output", got["stderr"], got["stdout"])
	}
}

// TestExecEnvironment: the command gets the allow-list of the worker's
// environment (PATH, HOME, locale, TZ, TMPDIR), the names ExecConfig.Env
// adds, and its message variables, which no inherited variable overrides;
// InheritEnv passes everything.
func TestExecEnvironment(t *testing.T) {
	t.Parallel()
	worker := []string{
		"PATH=/usr/bin:/bin", "HOME=/home/worker", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC", "TMPDIR=/tmp",
		"AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "AWS_SESSION_TOKEN=token", "AWS_REGION=eu-west-1",
		"AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/token", "OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer x",
		"SQSWORKER_HTTP_URL=http://user:pw@app/", "SQS_MESSAGE_ID=forged", "LCX=no",
	}
	base := []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}
	tests := []struct {
		name    string
		env     []string
		inherit bool
		want    []string // the inherited names the command sees, no more
	}{
		{name: "allow-list only", want: base},
		{name: "one name", env: []string{"AWS_REGION"}, want: append([]string{"AWS_REGION"}, base...)},
		{name: "a prefix", env: []string{"AWS_*"}, want: append([]string{
			"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_WEB_IDENTITY_TOKEN_FILE",
		}, base...)},
		{name: "inherit everything", inherit: true, want: []string{
			"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
			"AWS_REGION", "AWS_WEB_IDENTITY_TOKEN_FILE", "OTEL_EXPORTER_OTLP_HEADERS", "SQSWORKER_HTTP_URL", "LCX",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zapcore.DebugLevel)
			e, err := newExec(ExecConfig{Argv: []string{"/usr/bin/env"}, Env: tt.env, InheritEnv: tt.inherit, OutputLimit: 1 << 16},
				zap.New(core), worker)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Handle(t.Context(), testMessage()); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			seen := map[string]string{}
			for _, l := range strings.Split(logs.FilterMessage("command succeeded").All()[0].ContextMap()["stdout"].(string), "\n") {
				if k, v, ok := strings.Cut(l, "="); ok {
					seen[k] = v
				}
			}
			var got []string
			for k := range seen {
				if !strings.HasPrefix(k, "SQS_") {
					got = append(got, k)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("the command sees %v; want %v", got, want)
			}
			if seen["SQS_MESSAGE_ID"] != "msg-1" {
				t.Errorf("SQS_MESSAGE_ID = %q; want the message's own, msg-1", seen["SQS_MESSAGE_ID"])
			}
		})
	}
}

func TestExecEnvNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"AWS_REGION", "AWS_*", "lower_case", "X1"} {
		if err := CheckEnvName(name); err != nil {
			t.Errorf("CheckEnvName(%q) = %v; want nil", name, err)
		}
		if _, err := NewExec(ExecConfig{Argv: []string{"/bin/true"}, Env: []string{name}}, zap.NewNop()); err != nil {
			t.Errorf("NewExec with Env %q: %v", name, err)
		}
	}
	for _, name := range []string{"", "*", "AWS_*_KEY", "A=B", "A B", "A**"} {
		if err := CheckEnvName(name); err == nil {
			t.Errorf("CheckEnvName(%q) = nil; want an error", name)
		}
		if _, err := NewExec(ExecConfig{Argv: []string{"/bin/true"}, Env: []string{name}}, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "Env") {
			t.Errorf("NewExec with Env %q: error %v; want one naming Env", name, err)
		}
	}
}

// TestExecCancel checks that cancelling ctx stops the command and everything
// it started, whether or not it honours SIGTERM.
func TestExecCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		script    string
		killDelay time.Duration
	}{
		// A kill delay far beyond the deadline proves SIGTERM did the work.
		{name: "sigterm reaches grandchild", script: `sleep 30 & echo $! > "$1"; wait`, killDelay: time.Hour},
		{name: "sigterm ignored", script: `trap "" TERM; sleep 30 & echo $! > "$1"; wait`, killDelay: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pidFile := filepath.Join(t.TempDir(), "pid")
			e, _ := newTestExec(t, ExecConfig{Argv: shell(tt.script, pidFile)})
			e.killDelay = tt.killDelay

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- e.Handle(ctx, testMessage()) }()

			var pid int
			testkit.Eventually(t, 10*time.Second, "the command to start", func() bool {
				b, err := os.ReadFile(pidFile)
				if err != nil || !strings.HasSuffix(string(b), "\n") {
					return false
				}
				pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
				return err == nil
			})
			cancel()

			select {
			case err := <-done:
				if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
					t.Errorf("Handle error = %v; want a cancellation", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Handle did not return after ctx was cancelled")
			}
			testkit.Eventually(t, 10*time.Second, "the grandchild sleep to die", func() bool { return !alive(pid) })
		})
	}
}

func TestExecTimeout(t *testing.T) {
	t.Parallel()
	e, _ := newTestExec(t, ExecConfig{Argv: []string{"sleep", "30"}, Timeout: 50 * time.Millisecond})
	err := e.Handle(t.Context(), testMessage())
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("Handle error = %v; want a timeout naming the Timeout", err)
	}
}

// alive reports whether pid is a running process; a zombie waiting for an
// absent reaper counts as dead.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
