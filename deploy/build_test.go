package deploy_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sqsworker/sqsworker/internal/buildinfo"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// TestWorkerBuildTags checks that the Makefile builds the worker with the
// tags the tests and the Dockerfile use, and that with them nothing in
// the worker links text/template: its method lookups by name make the
// linker keep every exported method of every type in the binary, a third
// of its size (gRPC's request tracing brought it in; grpcnotrace keeps it
// out).
func TestWorkerBuildTags(t *testing.T) {
	t.Parallel()
	m := regexp.MustCompile(`(?m)^WORKER_TAGS := (\S+)$`).FindSubmatch(readFile(t, "Makefile"))
	if m == nil || string(m[1]) != sqstest.WorkerTags {
		t.Errorf("the Makefile's WORKER_TAGS is %q, want %q", m, sqstest.WorkerTags)
	}
	list := exec.CommandContext(context.Background(), "go", "list", "-tags="+sqstest.WorkerTags, "-deps", "./cmd/worker")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("%s: %v", list, err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "text/template" || pkg == "html/template" {
			t.Errorf("the worker links %s: find what imports it (go mod why -m, go list -deps) and keep it out", pkg)
		}
	}
}

// TestMakeBuildStampsTheCommit: `make build` makes a worker whose
// `worker version` names the commit checked out and says whether tracked
// files differ from it, even with the go command's own stamping off
// (GOFLAGS=-buildvcs=false, as on machines that set it).
func TestMakeBuildStampsTheCommit(t *testing.T) {
	t.Parallel()
	git := func(args ...string) string {
		cmd := exec.CommandContext(t.Context(), "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("not a git checkout, nothing to stamp (git %s: %v)", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	head := git("rev-parse", "HEAD")
	modified := git("status", "--porcelain", "--untracked-files=no") != ""
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make here")
	}
	bin := t.TempDir()
	build := exec.CommandContext(t.Context(), "make", "--no-print-directory", "build", "BIN="+bin)
	build.Dir = root
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(t.Context(), filepath.Join(bin, "worker"), "version", "--json").Output()
	var info buildinfo.Info
	if err != nil || json.Unmarshal(out, &info) != nil {
		t.Fatalf("worker version --json = %s (%v)", out, err)
	}
	if info.Revision != head || info.Modified != modified || info.Time == "" {
		t.Errorf("worker version --json from make build = %s; want revision %s, modified %v, and the commit's time", out, head, modified)
	}
}
