package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
	"github.com/sqsworker/sqsworker/internal/tools/line"
)

// fileBodies reads a drained file's bodies, counting each. A line the
// kill tore (the last one, and only that) is skipped: its message was
// never deleted.
func fileBodies(t *testing.T, path string, into map[string]int) (torn int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	r := line.NewReader(f)
	var lastErr error
	for {
		l, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var le *line.Error
		if lastErr != nil || err != nil && !errors.As(err, &le) {
			t.Fatalf("%s: a bad line before the last: %v %v", path, lastErr, err)
		}
		if err != nil {
			lastErr = err
			torn++
			continue
		}
		into[l.Body]++
	}
	return torn
}

func newlines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// TestDrainKilledMidRunLosesNothing: drain is killed with SIGKILL in the
// middle; every message is then in its file or still in the queue (a
// second drain writes what is left), none in neither.
func TestDrainKilledMidRunLosesNothing(t *testing.T) {
	t.Parallel()
	const n = 10000
	q, sent := sendAll(t, "drain-kill", n, sqstest.QueueOptions{})
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.jsonl"), filepath.Join(dir, "second.jsonl")
	p, err := sqstest.StartProcess(sqstest.ProcessOptions{Name: "drain", Path: workerBin,
		Args: []string{"drain", "--queue-url", q.URL, "--out", first, "--visibility-timeout", "2s", "--wait-time", "1s"},
		Env:  server.Env()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	killAt := 1000 + rand.IntN(5000) //nolint:gosec // a random moment, not a secret
	testkit.Eventually(t, 2*time.Minute, fmt.Sprintf("%d lines written", killAt), func() bool { return newlines(first) >= killAt || p.Exited() })
	p.Kill()
	written := newlines(first)
	atKill := depth(t, q.URL)

	_, stderr, code := tool(t, "", "drain", "--queue-url", q.URL, "--out", second, "--wait-time", "1s")
	if code != 0 {
		t.Fatalf("second drain: exit %d: %s", code, stderr)
	}
	got := map[string]int{}
	torn := fileBodies(t, first, got)
	fileBodies(t, second, got)
	lost, dup := countLostAndDuplicates(sent, got)
	t.Logf("figures: lines_at_kill=%d in_queue_at_kill=%d torn=%d lost=%d in_both_files=%d", written, atKill.Visible+atKill.InFlight, torn, lost, dup)
	if lost != 0 {
		t.Errorf("%d messages in neither the file nor the queue", lost)
	}
	if d := depth(t, q.URL); d != (sqstest.Depth{}) {
		t.Errorf("after the second drain the queue holds %+v", d)
	}
}

// TestDrainToStdoutIsOnlyLines: drained to stdout, the output is the
// lines and nothing else (for | jq); the summary is one line on stderr.
func TestDrainToStdoutIsOnlyLines(t *testing.T) {
	t.Parallel()
	const n = 25
	q, sent := sendAll(t, "drain-stdout", n, sqstest.QueueOptions{})
	stdout, stderr, code := tool(t, "", "drain", "--queue", q.Name, "--wait-time", "1s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := map[string]int{}
	r := line.NewReader(strings.NewReader(stdout))
	for {
		l, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stdout is not only lines: %v\n%s", err, stdout)
		}
		got[l.Body]++
	}
	if lost, dup := countLostAndDuplicates(sent, got); lost != 0 || dup != 0 || len(got) != n {
		t.Errorf("stdout held %d messages, %d lost, %d twice; want each of %d once", len(got), lost, dup, n)
	}
	if want := fmt.Sprintf("draining %s (messages are deleted after their line is written; --keep keeps them)\n"+
		"drain: %d messages from %s written to stdout and deleted; %s is empty\n", q.URL, n, q.Name, q.Name); stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	if d := depth(t, q.URL); d != (sqstest.Depth{}) {
		t.Errorf("the queue holds %+v after the drain", d)
	}
}
