package main

import (
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// TestRunByQueueName: --queue NAME consumes the queue GetQueueUrl names.
func TestRunByQueueName(t *testing.T) {
	t.Parallel()
	q, _ := sendAll(t, "by-name", 20, sqstest.QueueOptions{})
	rec := newRecorder(t, nil)
	w := startWorker(t, "--queue", q.Name, "--http-url", rec.srv.URL, "--wait-time", "1s")
	testkit.Eventually(t, time.Minute, "every message deleted", func() bool {
		return w.scrape().Value("sqsworker_messages_deleted_total") == 20
	})
	if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit status %d", code)
	}
	if _, total := rec.snapshot(); total != 20 {
		t.Errorf("handler got %d messages, want 20", total)
	}
}
