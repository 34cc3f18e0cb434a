package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// TestQueueDepthGaugesAgreeWithGetQueueAttributes: a running worker
// reports its queue's and its dead-letter queue's counts as SQS has them,
// and the age of each message it received.
func TestQueueDepthGaugesAgreeWithGetQueueAttributes(t *testing.T) {
	t.Parallel()
	q, _ := sendAll(t, "depth", 5, sqstest.QueueOptions{MaxReceiveCount: 3})
	for i := range 2 {
		if _, err := server.Client().SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(q.URL),
			MessageBody: aws.String(fmt.Sprintf("later-%d", i)), DelaySeconds: 900}); err != nil {
			t.Fatal(err)
		}
	}
	if err := server.SendBodies(t.Context(), q.DLQURL, bodies("dead", 3), nil); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, nil)
	w := startWorker(t, "--queue-url", q.URL, "--http-url", rec.srv.URL, "--wait-time", "1s", "--queue-stats-interval", "100ms")
	gauge := func(m sqstest.Metrics, url, state string) float64 {
		return m.Value("sqsworker_queue_messages", "queue", sqsapi.QueueName(url), "state", state)
	}
	agree := func(m sqstest.Metrics, url string) bool {
		d := depth(t, url)
		return gauge(m, url, "visible") == float64(d.Visible) && gauge(m, url, "in_flight") == float64(d.InFlight) &&
			gauge(m, url, "delayed") == float64(d.Delayed)
	}
	testkit.Eventually(t, time.Minute, "the five messages handled and the gauges equal to GetQueueAttributes", func() bool {
		m := w.scrape()
		return m.Value("sqsworker_messages_deleted_total") == 5 && agree(m, q.URL) && agree(m, q.DLQURL) &&
			gauge(m, q.URL, "delayed") == 2 && gauge(m, q.URL, "visible") == 0 && gauge(m, q.DLQURL, "visible") == 3
	})
	if n := w.scrape().Value("sqsworker_message_age_seconds"); n != 5 {
		t.Errorf("message age observed %v times, want once per received message (5)", n)
	}
	if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit status %d", code)
	}
}
