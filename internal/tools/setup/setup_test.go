package setup_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/setup"
	"github.com/sqsworker/sqsworker/internal/tools/tooltest"
)

func attributes(t *testing.T, name string) map[string]string {
	t.Helper()
	c := server.Client()
	u, err := c.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqsapi.DescribeQueue(t.Context(), c, aws.ToString(u.QueueUrl))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"} {
		delete(q.Attributes, k)
	}
	return q.Attributes
}

func TestSetupCreatesThenChangesNothing(t *testing.T) {
	t.Parallel()
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			t.Parallel()
			name := tooltest.UniqueName("setup")
			cfg := setup.Config{Queue: name, MaxReceive: 4, VisibilityTimeout: 45 * time.Second}
			dlq := name + "-dlq"
			if fifo {
				name += ".fifo"
				dlq += ".fifo"
				cfg.Queue, cfg.ContentBasedDedup = name, true
			}
			r, err := setup.Run(t.Context(), cfg, server.Client(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Changes) != 2 || !strings.HasPrefix(r.Changes[0], "created queue "+dlq) || !strings.HasPrefix(r.Changes[1], "created queue "+name) {
				t.Errorf("changes %q", r.Changes)
			}
			a, d := attributes(t, name), attributes(t, dlq)
			rp := sqsapi.ParseRedrivePolicy(a["RedrivePolicy"])
			if rp == nil || rp.MaxReceiveCount != 4 || rp.DeadLetterTargetARN != d["QueueArn"] || a["VisibilityTimeout"] != "45" {
				t.Errorf("queue attributes %v", a)
			}
			if d["MessageRetentionPeriod"] != "1209600" {
				t.Errorf("dead-letter queue retention %s s, want 14 days", d["MessageRetentionPeriod"])
			}
			if fifo && (a["FifoQueue"] != "true" || d["FifoQueue"] != "true" || a["ContentBasedDeduplication"] != "true") {
				t.Errorf("FIFO attributes: queue %v, dead-letter queue %v", a, d)
			}

			again, err := setup.Run(t.Context(), cfg, server.Client(), nil)
			if err != nil || len(again.Changes) != 0 || again.QueueURL != r.QueueURL || again.DLQURL != r.DLQURL {
				t.Errorf("second run: %+v, %v; want no changes", again, err)
			}
			if !reflect.DeepEqual(attributes(t, name), a) || !reflect.DeepEqual(attributes(t, dlq), d) {
				t.Errorf("the second run changed attributes")
			}
		})
	}
}

func TestSetupRefusesAConflictAndChangesNothing(t *testing.T) {
	t.Parallel()
	name := tooltest.UniqueName("setup-conflict")
	if _, err := setup.Run(t.Context(), setup.Config{Queue: name, MaxReceive: 3, VisibilityTimeout: time.Minute}, server.Client(), nil); err != nil {
		t.Fatal(err)
	}
	before := attributes(t, name)
	for _, tt := range []struct {
		name string
		cfg  setup.Config
		want string
	}{
		{"visibility timeout", setup.Config{Queue: name, MaxReceive: 3, VisibilityTimeout: 2 * time.Minute}, "visibility timeout 60s, not 120s"},
		{"receive count", setup.Config{Queue: name, MaxReceive: 5}, "3 receives before the dead-letter queue, not 5"},
		{"dead-letter queue", setup.Config{Queue: name, MaxReceive: 3, DLQ: name + "-other"}, "dead-letter queue " + name + "-dlq, not " + name + "-other"},
	} {
		_, err := setup.Run(t.Context(), tt.cfg, server.Client(), nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("%s: %v, want a refusal saying %q", tt.name, err, tt.want)
		}
	}
	if !reflect.DeepEqual(attributes(t, name), before) {
		t.Errorf("a refused run changed the queue")
	}
	if _, err := server.Client().GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(name + "-other")}); !sqsapi.IsQueueMissing(err) {
		t.Errorf("a refused run created the other dead-letter queue: %v", err)
	}
}

func TestSetupAddsARedrivePolicyToAnExistingQueue(t *testing.T) {
	t.Parallel()
	q := tooltest.CreateQueue(t, server, "setup-existing", sqstest.QueueOptions{})
	r, err := setup.Run(t.Context(), setup.Config{Queue: q.Name, MaxReceive: 2}, server.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Changes) != 2 || !strings.HasPrefix(r.Changes[1], "set the redrive policy of "+q.Name) {
		t.Errorf("changes %q", r.Changes)
	}
	if rp := sqsapi.ParseRedrivePolicy(attributes(t, q.Name)["RedrivePolicy"]); rp == nil || rp.MaxReceiveCount != 2 {
		t.Errorf("redrive policy %+v", rp)
	}
}

func TestSetupSubscribesOnceAndKeepsThePolicy(t *testing.T) {
	t.Parallel()
	name := tooltest.UniqueName("setup-sns")
	snsc := server.SNSClient()
	var topics []string
	for i := range 2 {
		out, err := snsc.CreateTopic(t.Context(), &sns.CreateTopicInput{Name: aws.String(fmt.Sprintf("%s-topic-%d", name, i))})
		if err != nil {
			t.Fatal(err)
		}
		topics = append(topics, aws.ToString(out.TopicArn))
	}
	// An existing queue whose policy already has a statement of its own.
	c := server.Client()
	other := `{"Sid":"Mine","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sqs:ReceiveMessage","Resource":"*"}`
	if _, err := c.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		string(types.QueueAttributeNamePolicy): `{"Version":"2012-10-17","Statement":` + other + `}`}}); err != nil {
		t.Fatal(err)
	}
	cfg := setup.Config{Queue: name, Subscribe: topics[:1]}
	r, err := setup.Run(t.Context(), cfg, c, snsc)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Changes) != 2 || !strings.HasPrefix(r.Changes[0], "let topic "+topics[0]) || !strings.HasPrefix(r.Changes[1], "subscribed queue "+name) {
		t.Errorf("changes %q", r.Changes)
	}
	cfg.Subscribe = topics
	if r, err = setup.Run(t.Context(), cfg, c, snsc); err != nil || len(r.Changes) != 2 || !strings.Contains(r.Changes[1], topics[1]) {
		t.Errorf("adding a second topic: %q, %v", r.Changes, err)
	}
	policy := attributes(t, name)["Policy"]
	again, err := setup.Run(t.Context(), cfg, c, snsc)
	if err != nil || len(again.Changes) != 0 {
		t.Errorf("third run: changes %q, %v; want none", again.Changes, err)
	}
	if got := attributes(t, name)["Policy"]; got != policy {
		t.Errorf("the third run changed the policy:\n%s\nwas:\n%s", got, policy)
	}
	if !strings.Contains(policy, `"Sid":"Mine"`) || strings.Count(policy, "sns.amazonaws.com") != 2 {
		t.Errorf("policy %s: want the queue's own statement and one per topic", policy)
	}
	arn := attributes(t, name)["QueueArn"]
	for _, topic := range topics {
		subs, err := snsc.ListSubscriptionsByTopic(t.Context(), &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic)})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range subs.Subscriptions {
			if aws.ToString(s.Endpoint) == arn {
				n++
			}
		}
		if n != 1 {
			t.Errorf("topic %s has %d subscriptions of the queue, want 1", topic, n)
		}
	}
}

func TestSetupValidateNamesTheField(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg   setup.Config
		field string
	}{
		{setup.Config{}, "Queue"},
		{setup.Config{Queue: "has space"}, "Queue"},
		{setup.Config{Queue: "orders", FIFO: true}, "Queue"},
		{setup.Config{Queue: "orders", MaxReceive: 1001}, "MaxReceive"},
		{setup.Config{Queue: "orders.fifo", MaxReceive: 3, DLQ: "orders-dlq"}, "DLQ"},
		{setup.Config{Queue: "orders", MaxReceive: 3, DLQ: "orders"}, "DLQ"},
		{setup.Config{Queue: "orders", ContentBasedDedup: true}, "ContentBasedDedup"},
		{setup.Config{Queue: "orders", VisibilityTimeout: 1500 * time.Millisecond}, "VisibilityTimeout"},
		{setup.Config{Queue: "orders", Subscribe: []string{"events"}}, "Subscribe"},
	} {
		var fe *config.FieldError
		if err := tt.cfg.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%+v: %v, want an error about %s", tt.cfg, err, tt.field)
		}
	}
	ok := setup.Config{Queue: "orders.fifo", MaxReceive: 3, ContentBasedDedup: true, VisibilityTimeout: time.Minute,
		Subscribe: []string{"arn:aws:sns:eu-west-1:123456789012:events.fifo"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
}
