package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
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
	fifo, err := server.CreateQueue(t.Context(), "reading-bad-fifo", sqstest.QueueOptions{FIFO: true})
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
		{"replay FIFO batch too large", []string{"replay", "--queue", fifo.Name, "--handler", "lambda", "--lambda-function", "f", "--batch-size", "11"}, 2,
			"--batch-size is 11: it must be between 1 and 10 on a FIFO queue"},
		{"replay batches hold too many", []string{"replay", "--queue", q.Name, "--http-url", "http://127.0.0.1:1/", "--http-batch-size", "5000", "--concurrency", "3"}, 2,
			"--http-batch-size is 5000, and with --concurrency 3 the worker would hold 15000 messages at once"},
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

// TestRedriveEndsWhileTheConsumerKeepsFailing: a consumer that fails
// every message (an exec handler running false, maxReceiveCount 1) runs
// while the dead-letter queue is redriven. Each message is moved once and
// the redrive ends by itself: at the messages the dead-letter queue held
// when it started, or, when its copies come back before it could end
// (one message held elsewhere keeps it from ending), by leaving those
// copies in the dead-letter queue rather than moving them again. Every
// message is in one of the two queues at the end.
func TestRedriveEndsWhileTheConsumerKeepsFailing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		holdOne bool // a message held elsewhere while the copies come back
	}{
		{name: "ends at what the dead-letter queue held", holdOne: false},
		{name: "copies that come back stay", holdOne: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const n = 5
			ctx := t.Context()
			q, err := server.CreateQueue(ctx, "redrive-poison", sqstest.QueueOptions{MaxReceiveCount: 1})
			if err != nil {
				t.Fatal(err)
			}
			dlq := q.Name + "-dlq"
			c := server.Client()
			var held *types.Message
			if tt.holdOne {
				if err := server.SendBodies(ctx, q.DLQURL, []string{"held-elsewhere"}, nil); err != nil {
					t.Fatal(err)
				}
				out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.DLQURL), VisibilityTimeout: 600})
				if err != nil || len(out.Messages) != 1 {
					t.Fatalf("hold a message of the dead-letter queue: %v, %d received", err, len(out.Messages))
				}
				held = &out.Messages[0]
			}
			sent := bodies(q.Name, n)
			if err := server.SendBodies(ctx, q.DLQURL, sent, nil); err != nil {
				t.Fatal(err)
			}
			consumer := startWorker(t, "--queue-url", q.URL, "--handler", "exec", "--exec", "false",
				"--retry-backoff-min", "1s", "--retry-backoff-max", "1s", "--wait-time", "1s")
			redrive, err := sqstest.StartProcess(sqstest.ProcessOptions{Name: "redrive", Path: workerBin,
				Args: []string{"redrive", "--from", q.DLQURL, "--wait-time", "1s"}, Env: server.Env()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(redrive.Kill)

			// Every copy failed once in the source queue and is back in the
			// dead-letter queue, invisible: the redrive holds it.
			backAndHeld := func() bool {
				failed := consumer.scrape().Value("sqsworker_messages_processed_total", "outcome", "failure")
				want := sqstest.Depth{}
				if tt.holdOne {
					want.InFlight = n + 1
				} else {
					want.Visible = n
				}
				return failed >= n && depth(t, q.URL) == sqstest.Depth{} && depth(t, q.DLQURL) == want
			}
			want := fmt.Sprintf("redrive: moved 5 of 5 messages read from %s (5 to %s)", dlq, q.Name)
			if tt.holdOne {
				testkit.Eventually(t, time.Minute, "every copy failed and came back into the dead-letter queue", backAndHeld)
				if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.DLQURL), ReceiptHandle: held.ReceiptHandle}); err != nil {
					t.Fatal(err)
				}
				want += fmt.Sprintf("; 5 copies it sent came back into %s during the run (their consumer failed again): they stay there, not moved twice", dlq)
			}
			code, err := redrive.Wait(time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			// The summary is the last line; the first names the queues.
			if got := redrive.LastLines(1); code != 0 || !strings.HasPrefix(got, want) {
				t.Fatalf("redrive: exit %d, stderr %q; want status 0 and %q", code, got, want)
			}
			if !tt.holdOne {
				testkit.Eventually(t, time.Minute, "every copy failed and came back into the dead-letter queue", backAndHeld)
			}
			if moved := consumer.scrape().Value("sqsworker_messages_processed_total", "outcome", "failure"); moved != n {
				t.Errorf("the consumer failed %v times, want %d: each message moved once", moved, n)
			}
			if code := consumer.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
				t.Fatalf("the consumer exited with status %d", code)
			}
			if d := depth(t, q.URL); d != (sqstest.Depth{}) {
				t.Errorf("the source queue holds %+v, want nothing", d)
			}
			stdout, _, code := tool(t, "", "drain", "--queue-url", q.DLQURL, "--wait-time", "1s")
			if code != 0 {
				t.Fatalf("drain the dead-letter queue: exit %d", code)
			}
			got := map[string]int{}
			r := line.NewReader(strings.NewReader(stdout))
			for {
				l, _, err := r.Next()
				if err != nil {
					break
				}
				got[l.Body]++
			}
			if lost, dup := countLostAndDuplicates(sent, got); lost != 0 || dup != 0 || len(got) != n {
				t.Errorf("the dead-letter queue holds %v at the end: %d lost, %d twice; want each of the %d messages once", got, lost, dup, n)
			}
		})
	}
}
