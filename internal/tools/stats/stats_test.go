package stats_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/stats"
	"github.com/sqsworker/sqsworker/internal/tools/tooltest"
)

// fill puts messages in each state: visible, in flight (received with a
// long visibility timeout) and delayed.
func fill(t *testing.T, url string, visible, inFlight, delayed int) {
	t.Helper()
	c := server.Client()
	if err := server.SendBodies(t.Context(), url, tooltest.Bodies("v", visible+inFlight), nil); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < inFlight; {
		out, err := c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url),
			MaxNumberOfMessages: int32(min(10, inFlight-got)), VisibilityTimeout: 600, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		got += len(out.Messages)
	}
	for i := range delayed {
		if _, err := c.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(url),
			MessageBody: aws.String(fmt.Sprintf("d%d", i)), DelaySeconds: 900}); err != nil {
			t.Fatal(err)
		}
	}
}

func readStats(t *testing.T, ctx context.Context, url string) stats.Stats {
	t.Helper()
	c := server.Client()
	q, err := sqsapi.ResolveQueue(ctx, c, sqsapi.QueueRef{URL: url}, server.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	r, err := stats.NewReader(ctx, c, q)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStatsAgreeWithGetQueueAttributes(t *testing.T) {
	t.Parallel()
	q := tooltest.CreateQueue(t, server, "stats", sqstest.QueueOptions{MaxReceiveCount: 4})
	fill(t, q.URL, 3, 2, 1)
	fill(t, q.DLQURL, 5, 0, 0)
	s := readStats(t, t.Context(), q.URL)
	if s.Queue.Counts != tooltest.Counts(t, server, q.URL) || s.Queue.Counts != (sqsapi.Counts{Visible: 3, InFlight: 2, Delayed: 1}) {
		t.Errorf("queue counts %+v; GetQueueAttributes says %+v", s.Queue.Counts, tooltest.Counts(t, server, q.URL))
	}
	if s.DeadLetterQueue == nil || s.DeadLetterQueue.URL != q.DLQURL || s.DeadLetterQueue.Counts != tooltest.Counts(t, server, q.DLQURL) {
		t.Fatalf("dead-letter queue %+v, want %s with %+v", s.DeadLetterQueue, q.DLQURL, tooltest.Counts(t, server, q.DLQURL))
	}
	if rp := s.Queue.RedrivePolicy; rp == nil || rp.MaxReceiveCount != 4 || rp.DeadLetterTargetARN != s.DeadLetterQueue.ARN {
		t.Errorf("redrive policy %+v", rp)
	}
	if len(s.SourceQueues) != 0 {
		t.Errorf("a queue no redrive policy names has sources %+v", s.SourceQueues)
	}

	var b strings.Builder
	p := &stats.Printer{W: &b}
	if err := p.Print(s); err != nil {
		t.Fatal(err)
	}
	dlqName := sqsapi.QueueName(q.DLQURL)
	want := fmt.Sprintf("%-*s  visible  in flight  delayed\n", len(dlqName), "queue") +
		fmt.Sprintf("%-*s  %7d  %9d  %7d  dead-letter queue %s after 4 receives\n", len(dlqName), q.Name, 3, 2, 1, dlqName) +
		fmt.Sprintf("%-*s  %7d  %9d  %7d  dead-letter queue of %s\n", len(dlqName), dlqName, 5, 0, 0, q.Name)
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestStatsOfADeadLetterQueueNameItsSources(t *testing.T) {
	t.Parallel()
	a := tooltest.CreateQueue(t, server, "stats-src", sqstest.QueueOptions{MaxReceiveCount: 3})
	b := tooltest.CreateQueue(t, server, "stats-src", sqstest.QueueOptions{})
	dlqARN, err := server.QueueARN(t.Context(), a.DLQURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Client().SetQueueAttributes(t.Context(), &sqs.SetQueueAttributesInput{QueueUrl: aws.String(b.URL),
		Attributes: map[string]string{"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":5}`, dlqARN)}}); err != nil {
		t.Fatal(err)
	}
	s := readStats(t, t.Context(), a.DLQURL)
	want := []stats.Source{{Name: a.Name, URL: a.URL}, {Name: b.Name, URL: b.URL}}
	if !reflect.DeepEqual(s.SourceQueues, want) && !reflect.DeepEqual(s.SourceQueues, []stats.Source{want[1], want[0]}) {
		t.Errorf("sources %+v, want %+v", s.SourceQueues, want)
	}
	if s.DeadLetterQueue != nil || s.Queue.RedrivePolicy != nil {
		t.Errorf("the dead-letter queue has a dead-letter queue: %+v", s)
	}
}
