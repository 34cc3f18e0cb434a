package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

var server *sqstest.Server

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m, testkit.StartServer(&server))
}

// TestConsumesTheQueue runs the example program against the local server:
// it handles every message once, deletes them, and stops by itself once
// the queue is idle.
func TestConsumesTheQueue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "library")
	if err := sqstest.Build(ctx, "github.com/sqsworker/sqsworker/examples/library", bin, "-race"); err != nil {
		t.Fatal(err)
	}
	q, err := server.CreateQueue(ctx, "example-library", sqstest.QueueOptions{VisibilityTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for i := range 300 {
		bodies = append(bodies, fmt.Sprintf("%s order %d", []string{"apple", "pear", "plum"}[i%3], i))
	}
	if err := server.SendBodies(ctx, q.URL, bodies, nil); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "--queue", q.Name, "--idle-timeout", "2s", "--concurrency", "16")
	cmd.Env = server.Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("library: %v\n%s", err, stderr.String())
	}
	var counts map[string]int
	if err := json.Unmarshal(stdout.Bytes(), &counts); err != nil {
		t.Fatalf("output %q: %v", stdout.String(), err)
	}
	if counts["apple"] != 100 || counts["pear"] != 100 || counts["plum"] != 100 {
		t.Errorf("counts = %v; want 100 of each", counts)
	}
	d, err := server.QueueDepth(ctx, q.URL)
	if err != nil {
		t.Fatal(err)
	}
	if d.Visible+d.InFlight != 0 {
		t.Errorf("queue holds %d visible, %d in flight after the run; want none", d.Visible, d.InFlight)
	}
}
