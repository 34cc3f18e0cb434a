package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

// delivery is one request the handler got.
type delivery struct {
	body, topic, subject string
}

// TestSetupSubscribeThenRunUnwrapsSNS: setup subscribes a new queue to a
// topic; a message published to the topic reaches the handler of
// `run --unwrap-sns` as the inner message, with the topic and subject as
// metadata; running setup again changes nothing.
func TestSetupSubscribeThenRunUnwrapsSNS(t *testing.T) {
	t.Parallel()
	name := fmt.Sprintf("setup-sns-%d", time.Now().UnixNano()%1e9)
	snsc := server.SNSClient()
	topic, err := snsc.CreateTopic(t.Context(), &sns.CreateTopicInput{Name: aws.String(name + "-events")})
	if err != nil {
		t.Fatal(err)
	}
	topicARN := aws.ToString(topic.TopicArn)
	args := []string{"setup", "--endpoint-url", server.Endpoint, "--queue", name, "--max-receive", "3", "--subscribe", topicARN}
	stdout, stderr, code := tool(t, "", args...)
	if code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"created queue " + name + "-dlq", "created queue " + name + " (dead-letter queue " + name + "-dlq after 3 receives)",
		"let topic " + topicARN + " send to queue " + name, "subscribed queue " + name + " to topic " + topicARN, "set up " + name} {
		if !strings.Contains(stdout, want) {
			t.Errorf("setup said:\n%s\nwant a line with %q", stdout, want)
		}
	}
	before := queueState(t, name)

	var mu sync.Mutex
	var got []delivery
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{string(b), r.Header.Get("X-Aws-Sqsd-Attr-SNS-Topic-Arn"), r.Header.Get("X-Aws-Sqsd-Attr-SNS-Subject")})
		mu.Unlock()
	}))
	defer h.Close()
	w := startWorker(t, "--queue", name, "--http-url", h.URL, "--unwrap-sns", "--wait-time", "1s")
	if _, err := snsc.Publish(t.Context(), &sns.PublishInput{TopicArn: topic.TopicArn, Message: aws.String(`{"order":7}`),
		Subject: aws.String("order created")}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the published message handled", func() bool {
		return w.scrape().Value("sqsworker_messages_deleted_total") == 1
	})
	if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("worker exit status %d", code)
	}
	mu.Lock()
	want := []delivery{{`{"order":7}`, topicARN, "order created"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("handler got %+v, want %+v", got, want)
	}
	mu.Unlock()

	stdout, stderr, code = tool(t, "", args...)
	if code != 0 || !strings.HasPrefix(stdout, "nothing changed: "+name) || strings.Count(stdout, "\n") != 1 {
		t.Errorf("second setup: exit %d\n%s%s\nwant one line saying nothing changed", code, stdout, stderr)
	}
	if after := queueState(t, name); after != before {
		t.Errorf("the second setup changed the queue:\n%s\nwas:\n%s", after, before)
	}
}

// queueState is what setup may change: the queue's and its DLQ's
// attributes (without counts) and the topic subscriptions of the queue.
func queueState(t *testing.T, name string) string {
	t.Helper()
	c := server.Client()
	var b strings.Builder
	for _, n := range []string{name, name + "-dlq"} {
		u, err := c.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(n)})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl,
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"QueueArn", "RedrivePolicy", "Policy", "VisibilityTimeout", "MessageRetentionPeriod", "LastModifiedTimestamp"} {
			fmt.Fprintf(&b, "%s %s=%s\n", n, k, out.Attributes[k])
		}
	}
	subs, err := server.SNSClient().ListSubscriptions(t.Context(), &sns.ListSubscriptionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs.Subscriptions {
		if strings.HasSuffix(aws.ToString(s.Endpoint), ":"+name) {
			fmt.Fprintf(&b, "subscription %s %s\n", aws.ToString(s.TopicArn), aws.ToString(s.SubscriptionArn))
		}
	}
	return b.String()
}
