package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/stats"
)

func TestStatsJSONAgreesWithGetQueueAttributes(t *testing.T) {
	t.Parallel()
	q, _ := sendAll(t, "stats-cli", 7, sqstest.QueueOptions{MaxReceiveCount: 2})
	if _, err := server.Client().ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL),
		MaxNumberOfMessages: 3, VisibilityTimeout: 600}); err != nil {
		t.Fatal(err)
	}
	if err := server.SendBodies(t.Context(), q.DLQURL, bodies("dead", 4), nil); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := tool(t, "", "stats", "--queue", q.Name, "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	var s stats.Stats
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	d, dd := depth(t, q.URL), depth(t, q.DLQURL)
	if s.Queue.Visible != int64(d.Visible) || s.Queue.InFlight != int64(d.InFlight) || s.Queue.Delayed != int64(d.Delayed) {
		t.Errorf("queue %+v; GetQueueAttributes says %+v", s.Queue.Counts, d)
	}
	if s.DeadLetterQueue == nil || s.DeadLetterQueue.Visible != int64(dd.Visible) || s.DeadLetterQueue.InFlight != int64(dd.InFlight) {
		t.Errorf("dead-letter queue %+v; GetQueueAttributes says %+v", s.DeadLetterQueue, dd)
	}
	if s.Queue.Visible != 4 || s.Queue.InFlight != 3 || s.Queue.RedrivePolicy == nil || s.Queue.RedrivePolicy.MaxReceiveCount != 2 {
		t.Errorf("queue %+v", s.Queue)
	}

	stdout, _, code = tool(t, "", "stats", "--queue", sqsapi.QueueName(q.DLQURL))
	if code != 0 || !strings.Contains(stdout, "dead-letter queue of "+q.Name) {
		t.Errorf("stats of the dead-letter queue (exit %d):\n%s\nwant it to name %s", code, stdout, q.Name)
	}
}

// TestStatsWatchPrintsUntilInterrupted: piped, --watch --json prints a
// JSON line per reading and exits 0 on SIGINT.
func TestStatsWatchPrintsUntilInterrupted(t *testing.T) {
	t.Parallel()
	q, _ := sendAll(t, "stats-watch", 2, sqstest.QueueOptions{})
	cmd := exec.Command(workerBin, "stats", "--queue-url", q.URL, "--watch", "1s", "--json")
	cmd.Env = append(os.Environ(), server.Env()...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	sc := bufio.NewScanner(out)
	for i := range 2 {
		if !sc.Scan() {
			t.Fatalf("reading %d: stdout ended", i)
		}
		var s stats.Stats
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil || s.Queue.Visible != 2 {
			t.Fatalf("reading %d: %q (%v)", i, sc.Text(), err)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after SIGINT: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("stats --watch did not exit on SIGINT")
	}
}
