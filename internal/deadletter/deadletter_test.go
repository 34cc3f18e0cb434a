package deadletter

import (
	"fmt"
	"strings"
	"testing"
)

func TestReasonLabelsStayBounded(t *testing.T) {
	t.Parallel()
	l := &labels{seen: map[string]bool{}}
	tests := []struct{ name, reason, want string }{
		{"a token is its own label", "bad-schema", "bad-schema"},
		{"spaces read as underscores", "exit code 65", "exit_code_65"},
		{"none given", " ", "unspecified"},
		{"free text is other", "field \"x\" missing!", "other"},
		{"too long is other", strings.Repeat("a", 41), "other"},
	}
	for _, tt := range tests {
		if got := l.of(tt.reason); got != tt.want {
			t.Errorf("%s: label of %q = %q, want %q", tt.name, tt.reason, got, tt.want)
		}
	}
	for i := range 2 * maxLabels {
		l.of(fmt.Sprintf("reason-%d", i))
	}
	if got := l.of("one-more"); got != "other" {
		t.Errorf("label past %d distinct reasons = %q, want other", maxLabels, got)
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	if got := clip(""); got != "unspecified" {
		t.Errorf("clip(\"\") = %q", got)
	}
	if got := clip(strings.Repeat("é", maxReasonBytes)); len(got) > maxReasonBytes || !strings.HasPrefix(got, "é") {
		t.Errorf("clip of a long reason: %d bytes", len(got))
	}
}
