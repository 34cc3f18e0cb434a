// Package tooltest holds what the tools' tests share: queues on the local
// SQS-compatible server, lines to load into them, and reading back what
// a queue holds. Each tool's tests start their own server in TestMain
// (testkit.StartServer) and pass it in.
package tooltest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/load"
)

// Log is a test's logger: warnings and errors only.
func Log(t *testing.T) *zap.Logger { return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)) }

// CreateQueue creates a queue named after prefix, failing the test if it
// cannot.
func CreateQueue(t *testing.T, s *sqstest.Server, prefix string, opts sqstest.QueueOptions) sqstest.Queue {
	t.Helper()
	q, err := s.CreateQueue(t.Context(), prefix, opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

var nameSeq atomic.Int64

// UniqueName is a queue or topic name starting with prefix that no other
// test of the run uses.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e6, nameSeq.Add(1))
}

// Bodies are n bodies: prefix-0, prefix-1, …
func Bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// Counts is the queue's counts as GetQueueAttributes reports them.
func Counts(t *testing.T, s *sqstest.Server, url string) sqsapi.Counts {
	t.Helper()
	d, err := s.QueueDepth(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	return sqsapi.Counts{Visible: int64(d.Visible), InFlight: int64(d.InFlight), Delayed: int64(d.Delayed)}
}

// Lines are n lines with string, number and binary attributes; on a
// FIFO queue each has a group (of five) and a deduplication id.
func Lines(n int, fifo bool) []line.Line {
	out := make([]line.Line, n)
	for i := range out {
		l := line.Line{
			MessageID: fmt.Sprintf("m-%d", i),
			Body:      fmt.Sprintf(`{"n":%d,"text":"<ü & ✓>"}`, i),
			Attributes: map[string]string{
				"SentTimestamp":  "1767225600000",
				"AWSTraceHeader": fmt.Sprintf("Root=1-5759e988-bd862e3fe1be46a9942727%02d;Sampled=1", i%100),
			},
			MessageAttributes: map[string]line.Attribute{
				"kind":  {DataType: "String", StringValue: fmt.Sprintf("kind-%d", i%3)},
				"total": {DataType: "Number", StringValue: fmt.Sprintf("%d.5", i)},
				"sig":   {DataType: "Binary", BinaryValue: []byte{byte(i), 0, 0xff}},
				"unit":  {DataType: "Number.float", StringValue: "1.25"},
			},
		}
		if fifo {
			l.Attributes["MessageGroupId"] = fmt.Sprintf("g-%d", i%5)
			l.Attributes["MessageDeduplicationId"] = fmt.Sprintf("d-%d", i)
		}
		out[i] = l
	}
	return out
}

// File is lines written as a file of lines.
func File(t *testing.T, lines []line.Line) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	w := line.NewWriter(&b)
	for i := range lines {
		if err := w.Write(&lines[i]); err != nil {
			t.Fatal(err)
		}
	}
	return &b
}

// Load sends lines into the queue at url with the load tool, failing the
// test unless every line was sent.
func Load(t *testing.T, s *sqstest.Server, url string, fifo bool, lines []line.Line) {
	t.Helper()
	r, err := load.Run(t.Context(), load.Config{QueueURL: url, FIFO: fifo}, s.Client(), File(t, lines))
	if err != nil || !r.OK() {
		t.Fatalf("load %d lines: %v; %+v", len(lines), err, r)
	}
}

// Sent is what a received message kept of its line.
type Sent struct {
	Body, Group, Dedup string
	Attrs              map[string]line.Attribute
}

// KeptOf is what a message sent from l should keep.
func KeptOf(l line.Line) Sent {
	return Sent{Body: l.Body, Group: l.GroupID(), Dedup: l.DeduplicationID(), Attrs: l.MessageAttributes}
}

// Received is what the received message m kept.
func Received(m types.Message) Sent {
	return KeptOf(line.FromMessage(message.FromSQS("", m, time.Now())))
}

// ReceiveAll receives and deletes messages until n have come, failing
// the test if they do not within a minute.
func ReceiveAll(t *testing.T, s *sqstest.Server, queueURL string, n int) []types.Message {
	t.Helper()
	c := s.Client()
	var got []types.Message
	testkit.Eventually(t, time.Minute, fmt.Sprintf("%d messages in %s", n, queueURL), func() bool {
		out, err := c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			got = append(got, m)
			if _, err := c.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
		return len(got) >= n
	})
	return got
}

// Collect receives and deletes every message of the queue, several polls
// at once, until n have come.
func Collect(t *testing.T, s *sqstest.Server, url string, n int) []types.Message {
	t.Helper()
	c := s.Client()
	var mu sync.Mutex
	var got []types.Message
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				done := len(got) >= n
				mu.Unlock()
				if done {
					return
				}
				out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
					MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
					MessageAttributeNames:       []string{"All"},
				})
				if err != nil || len(out.Messages) == 0 {
					continue
				}
				var del []types.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if _, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: del}); err != nil {
					t.Error(err)
				}
				mu.Lock()
				got = append(got, out.Messages...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) < n {
		t.Fatalf("collected %d of %d messages from %s", len(got), n, url)
	}
	return got
}
