package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// TestHandlerDeadLettersAMessageAtOnce: a handler that says a message can
// never succeed (HTTP header X-Sqsworker-Dead-Letter, exec exit 65) is
// called once for it; the message is then in the dead-letter queue with
// its attributes, its group and the reason, and gone from the queue.
func TestHandlerDeadLettersAMessageAtOnce(t *testing.T) {
	t.Parallel()
	const n, badBody = 20, "bad-schema-order"
	// script is an exec handler that logs each body it is given and
	// exits 65 for the bad one.
	script := func(t *testing.T, calls string) []string {
		path := filepath.Join(t.TempDir(), "handler.sh")
		src := fmt.Sprintf("#!/bin/sh\nbody=$(cat)\nprintf '%%s\\n' \"$body\" >> %q\n[ \"$body\" = %q ] && exit 65\nexit 0\n", calls, badBody)
		if err := os.WriteFile(path, []byte(src), 0o700); err != nil {
			t.Fatal(err)
		}
		return []string{"--handler", "exec", "--exec", path}
	}
	tests := []struct {
		name   string
		fifo   bool
		exec   bool
		reason string
	}{
		{name: "http", reason: "bad-schema"},
		{name: "http fifo", fifo: true, reason: "bad-schema"},
		{name: "exec", exec: true, reason: "exit code 65"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q, err := server.CreateQueue(t.Context(), "dead-letter-now", sqstest.QueueOptions{MaxReceiveCount: 5, FIFO: tt.fifo})
			if err != nil {
				t.Fatal(err)
			}
			var group func(int) string
			in := &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(badBody),
				MessageAttributes: map[string]types.MessageAttributeValue{
					"tenant": {DataType: aws.String("String"), StringValue: aws.String("acme")},
					"n":      {DataType: aws.String("Number"), StringValue: aws.String("7")},
				}}
			if tt.fifo {
				group = func(i int) string { return "g" + strconv.Itoa(i%3) }
				in.MessageGroupId, in.MessageDeduplicationId = aws.String("g-bad"), aws.String("bad")
			}
			good := bodies("good", n-1)
			if err := server.SendBodies(t.Context(), q.URL, good, group); err != nil {
				t.Fatal(err)
			}
			if _, err := server.Client().SendMessage(t.Context(), in); err != nil {
				t.Fatal(err)
			}

			args := []string{"--queue-url", q.URL, "--wait-time", "1s"}
			var e *endpoint
			callLog := filepath.Join(t.TempDir(), "calls")
			if tt.exec {
				args = append(args, script(t, callLog)...)
			} else {
				e = newEndpoint(t, func(body string, h http.Header) int {
					if body == badBody {
						h.Set("X-Sqsworker-Dead-Letter", "bad-schema")
						return http.StatusUnprocessableEntity
					}
					return http.StatusOK
				})
				args = append(args, "--http-url", e.url())
			}
			w := startWorker(t, args...)
			testkit.Eventually(t, time.Minute, "the bad message in the dead-letter queue and the queue empty", func() bool {
				d := depth(t, q.URL)
				return d.Visible+d.InFlight == 0 && depth(t, q.DLQURL).Visible == 1 &&
					w.scrape().Value("sqsworker_messages_deleted_total") == n
			})
			m := w.scrape()
			w.stop(syscall.SIGTERM, time.Minute)

			var perBody map[string]int
			if tt.exec {
				b, err := os.ReadFile(callLog)
				if err != nil {
					t.Fatal(err)
				}
				perBody = map[string]int{}
				for _, l := range strings.Fields(string(b)) {
					perBody[l]++
				}
			} else {
				calls, _, _ := e.snapshot()
				perBody = callsPerBody(calls)
			}
			out, err := server.Client().ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.DLQURL),
				MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
				MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameMessageGroupId}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("figures: bad_calls=%d dlq_messages=%d dead_lettered=%.0f (reason %q) deleted=%.0f",
				perBody[badBody], len(out.Messages), m.Value("sqsworker_messages_processed_total", "outcome", "dead_lettered"), tt.reason,
				m.Value("sqsworker_messages_deleted_total"))
			if perBody[badBody] != 1 {
				t.Errorf("the bad message was handled %d times, want once", perBody[badBody])
			}
			if len(out.Messages) != 1 {
				t.Fatalf("%d messages in the dead-letter queue, want 1", len(out.Messages))
			}
			got := out.Messages[0]
			attr := func(k string) string { return aws.ToString(got.MessageAttributes[k].StringValue) }
			if aws.ToString(got.Body) != badBody || attr("sqsworker.dead_letter_reason") != tt.reason ||
				attr("tenant") != "acme" || attr("n") != "7" || aws.ToString(got.MessageAttributes["n"].DataType) != "Number" {
				t.Errorf("dead-letter copy: body %q, attributes %v; want the body, tenant=acme, n=7 (Number) and reason %q",
					aws.ToString(got.Body), got.MessageAttributes, tt.reason)
			}
			if g := got.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]; tt.fifo && g != "g-bad" {
				t.Errorf("dead-letter copy in group %q, want g-bad", g)
			}
			if v := m.Value("sqsworker_messages_dead_lettered_total"); v != 1 {
				t.Errorf("sqsworker_messages_dead_lettered_total = %v, want 1", v)
			}
		})
	}
}
