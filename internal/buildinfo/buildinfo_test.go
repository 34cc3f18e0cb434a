package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestReadAndString(t *testing.T) {
	t.Parallel()
	info := Read()
	if info.Version == "" || info.GoVersion != runtime.Version() {
		t.Fatalf("Read() = %+v: want a version and the running Go version", info)
	}
	s := info.String()
	if !strings.HasPrefix(s, "worker "+info.Version+"\n") || !strings.Contains(s, runtime.Version()) {
		t.Errorf("String() = %q: want the version first, then the Go version", s)
	}
}

func TestLinkTimeVersionWins(t *testing.T) {
	old, oldRev, oldTime, oldMod := version, revision, revisionTime, modified
	t.Cleanup(func() { version, revision, revisionTime, modified = old, oldRev, oldTime, oldMod })
	version, revision, revisionTime, modified = "v9.8.7", "0123abc", "2026-01-02T03:04:05Z", "true"
	info := Read()
	if info.Version != "v9.8.7" || info.Revision != "0123abc" || info.Time != revisionTime || !info.Modified {
		t.Errorf("Read() = %+v, want the link-time v9.8.7 at 0123abc, its time, modified", info)
	}
	if got := (Info{Version: "v1", Revision: "abc", Modified: true}).String(); !strings.Contains(got, "abc (modified)") {
		t.Errorf("String() = %q: want the revision marked modified", got)
	}
}
