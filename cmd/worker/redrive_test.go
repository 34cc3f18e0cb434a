package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/line"
)

// TestRedriveDryRunThenMoveWithAFilter: a dry run prints exactly the
// lines that would move and moves nothing; the real run then moves them
// to the source queue and leaves the others in the dead-letter queue.
func TestRedriveDryRunThenMoveWithAFilter(t *testing.T) {
	t.Parallel()
	const n = 45
	q, err := server.CreateQueue(t.Context(), "redrive-cli", sqstest.QueueOptions{MaxReceiveCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, _, code := tool(t, attributeLines(n, false), "load", "--queue-url", q.DLQURL)
	if code != 0 {
		t.Fatalf("load: exit %d", code)
	}
	dlq := q.Name + "-dlq"
	filter := `(.message_attributes.n.string_value | tonumber) % 3 == 0`
	stdout, stderr, code := tool(t, "", "redrive", "--from", dlq, "--filter", filter, "--dry-run", "--wait-time", "1s")
	want := fmt.Sprintf("redrive dry run: reading %s, to move to each message's source queue; nothing is moved or deleted\n"+
		"redrive: 15 would move of 45 messages read from %s (15 to %s); 30 did not match the filter: they stay in %s; nothing was moved or deleted\n",
		q.DLQURL, dlq, q.Name, dlq)
	if code != 0 || stderr != want {
		t.Fatalf("dry run: exit %d, stderr %q; want %q", code, stderr, want)
	}
	r := line.NewReader(strings.NewReader(stdout))
	printed := 0
	for {
		l, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var k int
		if _, serr := fmt.Sscan(l.MessageAttributes["n"].StringValue, &k); err != nil || serr != nil || k%3 != 0 {
			t.Fatalf("dry run printed %+v (%v), want only lines the filter selects", l, err)
		}
		printed++
	}
	if d := depth(t, q.DLQURL); printed != 15 || d.Visible != n || d.InFlight != 0 {
		t.Fatalf("dry run printed %d lines and left %+v in the dead-letter queue; want 15, and all %d visible", printed, d, n)
	}

	_, stderr, code = tool(t, "", "redrive", "--from", q.DLQURL, "--filter", filter, "--wait-time", "1s", "--rate", "500/s")
	want = fmt.Sprintf("redriving %s to each message's source queue (each message is deleted from the dead-letter queue once its copy is sent; --dry-run moves nothing)\n"+
		"redrive: moved 15 of 45 messages read from %s (15 to %s); 30 did not match the filter: they stay in %s\n", q.DLQURL, dlq, q.Name, dlq)
	if code != 0 || stderr != want {
		t.Fatalf("redrive: exit %d, stderr %q; want %q", code, stderr, want)
	}
	if d := depth(t, q.URL); d.Visible != 15 {
		t.Errorf("the source queue holds %+v, want the 15 moved", d)
	}
	if d := depth(t, q.DLQURL); d.Visible != n-15 || d.InFlight != 0 {
		t.Errorf("the dead-letter queue holds %+v, want the other %d visible", d, n-15)
	}
}

// TestReadingToolsBadInputOneClearLine: each mistake is one line saying
// what is wrong, a non-zero status, and nothing lost.
func TestReadingToolsBadInputOneClearLine(t *testing.T) {
	t.Parallel()
	const n = 12
	q, _ := sendAll(t, "reading-bad", n, sqstest.QueueOptions{})
	lonely, _ := sendAll(t, "reading-bad-lonely", 3, sqstest.QueueOptions{}) // no queue names it as its dead-letter queue
	shared, _ := sendAll(t, "reading-bad-shared", n, sqstest.QueueOptions{})
	sharedARN, err := server.QueueARN(t.Context(), shared.URL)
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, name := range []string{shared.Name + "-a", shared.Name + "-b"} {
		if _, err := server.Client().CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
			"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":3}`, sharedARN)}}); err != nil {
			t.Fatal(err)
		}
		sources = append(sources, name)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"drain unknown queue", []string{"drain", "--queue", "no-such-queue"}, 1, "queue no-such-queue does not exist"},
		{"drain no queue", []string{"drain"}, 2, "--queue-url or --queue is required"},
		{"drain unwritable output", []string{"drain", "--queue", q.Name, "--out", t.TempDir()}, 1, "cannot write --out "},
		{"drain output in no directory", []string{"drain", "--queue", q.Name, "--out", "/no/such/dir/out.jsonl"}, 1, "no such file or directory"},
		{"drain wait too long", []string{"drain", "--queue", q.Name, "--wait-time", "30s"}, 2, "--wait-time is 30s: it must be whole seconds from 1s to 20s"},
		{"drain visibility in milliseconds", []string{"drain", "--queue", q.Name, "--visibility-timeout", "1500ms"}, 2, "--visibility-timeout is 1.5s: it must be whole seconds"},
		{"drain negative max", []string{"drain", "--queue", q.Name, "--max", "-1"}, 2, "--max is -1"},
		{"redrive no from", []string{"redrive"}, 2, "--from is required"},
		{"redrive unknown from", []string{"redrive", "--from", "no-such-dlq"}, 1, "queue no-such-dlq does not exist"},
		{"redrive unknown to", []string{"redrive", "--from", q.Name, "--to", "no-such-target"}, 1, "queue no-such-target does not exist"},
		{"redrive to itself", []string{"redrive", "--from", q.Name, "--to", q.URL}, 2, "--to is " + q.Name + ", the queue messages are moved from"},
		{"redrive invalid filter", []string{"redrive", "--from", q.Name, "--filter", "select(.body =="}, 2, `--filter "select(.body ==" is not a jq expression: unexpected EOF`},
		{"redrive unknown jq function", []string{"redrive", "--from", q.Name, "--filter", "frobnicate(.body)"}, 2, "function not defined: frobnicate/1"},
		{"redrive rate 0", []string{"redrive", "--from", q.Name, "--rate", "0"}, 2, `--rate "0": want messages per second above 0`},
		{"redrive no source", []string{"redrive", "--from", lonely.Name, "--wait-time", "1s"}, 2,
			"--to is needed: message "},
		{"redrive two sources", []string{"redrive", "--from", shared.Name, "--wait-time", "1s"}, 2,
			"is the dead-letter queue of 2 queues (" + strings.Join(sources, ", ") + "): name the one to move to"},
		{"replay no handler url", []string{"replay", "--queue", q.Name}, 2, "--http-url is required with the http handler"},
		{"replay unknown queue", []string{"replay", "--queue", "no-such-dlq", "--http-url", "http://127.0.0.1:1/"}, 1, "queue no-such-dlq does not exist"},
		{"replay concurrency 0", []string{"replay", "--queue", q.Name, "--http-url", "http://127.0.0.1:1/", "--concurrency", "-2"}, 2, "--concurrency is -2"},
	}
	t.Run("each", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, stderr, code := tool(t, "", tt.args...)
				got := strings.TrimRight(afterStartLine(stderr), "\n")
				if code != tt.wantCode {
					t.Errorf("exit status %d, want %d; stderr:\n%s", code, tt.wantCode, got)
				}
				if strings.Contains(got, "\n") || !strings.HasPrefix(got, "worker: ") || !strings.Contains(got, tt.wantErr) {
					t.Errorf("stderr %q, want one 'worker: ' line containing %q", got, tt.wantErr)
				}
			})
		}
	})
	for _, c := range []struct {
		q    sqstest.Queue
		want int
	}{{q, n}, {lonely, 3}, {shared, n}} {
		if d := depth(t, c.q.URL); d.Visible != c.want || d.InFlight != 0 {
			t.Errorf("%s holds %+v after the bad runs, want its %d messages visible", c.q.Name, d, c.want)
		}
	}
}
