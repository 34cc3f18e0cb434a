package handler

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestNewExecValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     ExecConfig
		wantErr []string
	}{
		{name: "ok", cfg: ExecConfig{Argv: []string{"sh", "-c", "true"}}},
		{name: "empty", cfg: ExecConfig{}, wantErr: []string{"Argv", "empty"}},
		{name: "not found", cfg: ExecConfig{Argv: []string{"no-such-command-sqsworker"}}, wantErr: []string{"find command", "no-such-command-sqsworker", "PATH"}},
		{name: "not found by path", cfg: ExecConfig{Argv: []string{"/nonexistent/run.sh"}}, wantErr: []string{"find command", "/nonexistent/run.sh"}},
		{name: "negative timeout", cfg: ExecConfig{Argv: []string{"sh"}, Timeout: -time.Second}, wantErr: []string{"Timeout"}},
		{name: "negative limit", cfg: ExecConfig{Argv: []string{"sh"}, OutputLimit: -1}, wantErr: []string{"OutputLimit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewExec(tt.cfg, zap.NewNop())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("NewExec: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("NewExec succeeded; want error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "simple", in: "tenant", want: "TENANT"},
		{name: "punctuation", in: "x-trace.id", want: "X_TRACE_ID"},
		{name: "non-ascii", in: "año", want: "A__O"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := envName(tt.in); got != tt.want {
				t.Errorf("envName(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCapWriter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		limit  int
		writes []string
		want   string
	}{
		{name: "under limit", limit: 10, writes: []string{"abc", "def"}, want: "abcdef"},
		{name: "exactly limit", limit: 6, writes: []string{"abcdef"}, want: "abcdef"},
		{name: "over limit", limit: 6, writes: []string{"abcdefgh"}, want: "abc…[2 bytes omitted]…fgh"},
		{name: "many small writes", limit: 4, writes: strings.Split("abcdefghij", ""), want: "ab…[6 bytes omitted]…ij"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := &capWriter{limit: tt.limit}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if got := w.String(); got != tt.want {
				t.Errorf("String() = %q; want %q", got, tt.want)
			}
		})
	}
}
