package deploy_test

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"

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
