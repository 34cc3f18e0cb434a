package handler

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sqsworker/sqsworker/internal/message"
)

func TestUnwrapSNS(t *testing.T) {
	t.Parallel()
	const envelope = `{
  "Type" : "Notification",
  "MessageId" : "sns-1",
  "TopicArn" : "arn:aws:sns:eu-west-1:123456789012:orders",
  "Subject" : "New order",
  "Message" : "{\"order\":42}",
  "Timestamp" : "2025-01-02T03:04:05.000Z",
  "MessageAttributes" : {
    "Tenant" : {"Type":"String","Value":"acme"},
    "Priority" : {"Type":"Number","Value":"7"},
    "Tags" : {"Type":"String.Array","Value":"[\"a\",\"b\"]"},
    "Blob" : {"Type":"Binary","Value":"AQI="}
  }
}`
	tests := []struct {
		name        string
		body        string
		wantBody    string
		wantUnwrap  bool
		wantAttrs   map[string]string // string attributes expected after unwrap
		wantMissing []string
	}{
		{
			name:       "notification",
			body:       envelope,
			wantBody:   `{"order":42}`,
			wantUnwrap: true,
			wantAttrs: map[string]string{
				"Tenant":        "acme",
				"Priority":      "7",
				"Tags":          `["a","b"]`,
				"SNS-Topic-Arn": "arn:aws:sns:eu-west-1:123456789012:orders",
				"SNS-Subject":   "New order",
				"Existing":      "kept",
			},
		},
		{
			name:        "no subject or attributes",
			body:        `{"Type":"Notification","MessageId":"m","TopicArn":"arn:t","Message":"plain text"}`,
			wantBody:    "plain text",
			wantUnwrap:  true,
			wantAttrs:   map[string]string{"SNS-Topic-Arn": "arn:t"},
			wantMissing: []string{"SNS-Subject"},
		},
		{
			name:       "empty message",
			body:       `{"Type":"Notification","MessageId":"m","TopicArn":"arn:t","Message":""}`,
			wantBody:   "",
			wantUnwrap: true,
		},
		{name: "plain json", body: `{"order":42}`},
		{name: "not json", body: "hello TopicArn"},
		{name: "invalid json", body: `{"TopicArn": "arn:t", `},
		{name: "subscription confirmation", body: `{"Type":"SubscriptionConfirmation","MessageId":"m","TopicArn":"arn:t","Message":"confirm"}`},
		{name: "no message", body: `{"Type":"Notification","MessageId":"m","TopicArn":"arn:t"}`},
		{name: "no message id", body: `{"Type":"Notification","TopicArn":"arn:t","Message":"x"}`},
		{name: "json array", body: `[{"TopicArn":"arn:t"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := &message.Message{
				ID:   "sqs-1",
				Body: tt.body,
				Attributes: map[string]types.MessageAttributeValue{
					"Existing": {DataType: ptr("String"), StringValue: ptr("kept")},
				},
			}
			var got *message.Message
			wantErr := errors.New("from inner handler")
			h := UnwrapSNS(Func(func(_ context.Context, m *message.Message) error {
				got = m
				return wantErr
			}), SNSConfig{}, zap.NewNop())
			if err := h.Handle(t.Context(), msg); !errors.Is(err, wantErr) {
				t.Fatalf("Handle error = %v; want the inner handler's", err)
			}

			if msg.Body != tt.body || len(msg.Attributes) != 1 {
				t.Errorf("original message changed: body %q, %d attributes", msg.Body, len(msg.Attributes))
			}
			if !tt.wantUnwrap {
				if got != msg {
					t.Errorf("handler got a different message; want the original passed through")
				}
				return
			}
			if got == msg {
				t.Fatal("handler got the original message; want an unwrapped copy")
			}
			if got.Body != tt.wantBody || got.ID != "sqs-1" {
				t.Errorf("got body %q id %q; want body %q id sqs-1", got.Body, got.ID, tt.wantBody)
			}
			for k, v := range tt.wantAttrs {
				if g, ok := got.StringAttribute(k); !ok || g != v {
					t.Errorf("attribute %s = %q, %v; want %q", k, g, ok, v)
				}
			}
			for _, k := range tt.wantMissing {
				if _, ok := got.Attributes[k]; ok {
					t.Errorf("attribute %s present; want absent", k)
				}
			}
		})
	}
}

// TestUnwrapSNSTopics: with TopicARNs, an envelope naming another topic
// fails its message, with a warning that names the topic, and the handler
// never sees it; bodies that are no envelope pass through.
func TestUnwrapSNSTopics(t *testing.T) {
	t.Parallel()
	const allowed, other = "arn:aws:sns:eu-west-1:123456789012:orders", "arn:aws:sns:eu-west-1:999999999999:evil"
	envelope := func(topic string) string {
		return `{"Type":"Notification","MessageId":"m","TopicArn":"` + topic + `","Message":"inner"}`
	}
	tests := []struct {
		name     string
		topics   []string
		body     string
		wantBody string // what the handler gets; "" when it is not called
	}{
		{name: "allowed topic", topics: []string{other, allowed}, body: envelope(allowed), wantBody: "inner"},
		{name: "other topic", topics: []string{allowed}, body: envelope(other)},
		{name: "no allow-list", body: envelope(other), wantBody: "inner"},
		{name: "not an envelope", topics: []string{allowed}, body: "plain", wantBody: "plain"},
		{name: "not a notification", topics: []string{allowed}, body: `{"Type":"SubscriptionConfirmation","MessageId":"m","TopicArn":"` + other + `","Message":"x"}`,
			wantBody: `{"Type":"SubscriptionConfirmation","MessageId":"m","TopicArn":"` + other + `","Message":"x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zapcore.InfoLevel)
			var got *message.Message
			h := UnwrapSNS(Func(func(_ context.Context, m *message.Message) error {
				got = m
				return nil
			}), SNSConfig{TopicARNs: tt.topics}, zap.New(core))
			err := h.Handle(t.Context(), &message.Message{ID: "sqs-1", Body: tt.body})
			if tt.wantBody == "" {
				if !errors.Is(err, ErrSNSTopic) || !strings.Contains(err.Error(), other) || got != nil {
					t.Errorf("Handle = %v, handler called: %v; want ErrSNSTopic naming %s and no call", err, got != nil, other)
				}
				warns := logs.FilterMessageSnippet("topic not allowed").All()
				if len(warns) != 1 || warns[0].Level != zapcore.WarnLevel || warns[0].ContextMap()["topic_arn"] != other {
					t.Errorf("log %v; want one warning naming topic_arn %s", logs.All(), other)
				}
				return
			}
			if err != nil || got == nil || got.Body != tt.wantBody {
				t.Errorf("Handle = %v, handler got %+v; want body %q", err, got, tt.wantBody)
			}
		})
	}
}

// TestUnwrapSNSAttributesOnlyFromEnvelopes: SNS-Topic-Arn and SNS-Subject
// set by whoever sent the message never reach the handler: only an
// unwrapped envelope sets them.
func TestUnwrapSNSAttributesOnlyFromEnvelopes(t *testing.T) {
	t.Parallel()
	forged := map[string]types.MessageAttributeValue{
		"SNS-Topic-Arn": {DataType: ptr("String"), StringValue: ptr("arn:aws:sns:eu-west-1:123456789012:orders")},
		"SNS-Subject":   {DataType: ptr("String"), StringValue: ptr("forged")},
		"Tenant":        {DataType: ptr("String"), StringValue: ptr("acme")},
	}
	tests := []struct {
		name, body, wantTopic, wantSubject string
	}{
		{name: "raw message", body: "plain"},
		{name: "envelope without subject", body: `{"Type":"Notification","MessageId":"m","TopicArn":"arn:aws:sns:eu-west-1:1:t","Message":"x"}`,
			wantTopic: "arn:aws:sns:eu-west-1:1:t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := &message.Message{ID: "sqs-1", Body: tt.body, Attributes: forged}
			var got *message.Message
			h := UnwrapSNS(Func(func(_ context.Context, m *message.Message) error { got = m; return nil }), SNSConfig{}, zap.NewNop())
			if err := h.Handle(t.Context(), msg); err != nil {
				t.Fatal(err)
			}
			topic, _ := got.StringAttribute("SNS-Topic-Arn")
			subject, _ := got.StringAttribute("SNS-Subject")
			tenant, _ := got.StringAttribute("Tenant")
			if topic != tt.wantTopic || subject != tt.wantSubject || tenant != "acme" {
				t.Errorf("handler got SNS-Topic-Arn %q SNS-Subject %q Tenant %q; want %q, %q, acme", topic, subject, tenant, tt.wantTopic, tt.wantSubject)
			}
			if len(msg.Attributes) != 3 {
				t.Errorf("the original message lost attributes: %v", msg.Attributes)
			}
		})
	}
}

func TestCheckTopicARN(t *testing.T) {
	t.Parallel()
	for _, arn := range []string{"arn:aws:sns:eu-west-1:123456789012:orders", "arn:aws-cn:sns:cn-north-1:123456789012:orders.fifo"} {
		if err := CheckTopicARN(arn); err != nil {
			t.Errorf("CheckTopicARN(%q) = %v; want nil", arn, err)
		}
	}
	for _, arn := range []string{"", "orders", "arn:aws:sqs:eu-west-1:123456789012:orders", "arn:aws:sns:eu-west-1:123456789012", "arn:aws:sns::123456789012:orders"} {
		if err := CheckTopicARN(arn); err == nil {
			t.Errorf("CheckTopicARN(%q) = nil; want an error", arn)
		}
	}
}

func TestUnwrapSNSBinaryAttribute(t *testing.T) {
	t.Parallel()
	body := `{"Type":"Notification","MessageId":"m","TopicArn":"arn:t","Message":"x",` +
		`"MessageAttributes":{"Blob":{"Type":"Binary","Value":"AQI="},"Broken":{"Type":"Binary","Value":"!!"}}}`
	got, ok := unwrapSNS(&message.Message{Body: body})
	if !ok {
		t.Fatal("not unwrapped")
	}
	if b := got.Attributes["Blob"].BinaryValue; string(b) != "\x01\x02" {
		t.Errorf("Blob = %v; want [1 2]", b)
	}
	if _, ok := got.Attributes["Broken"]; ok {
		t.Error("attribute with invalid base64 kept; want it dropped")
	}
}

// TestUnwrapSNSBatch: around a batch handler UnwrapSNS is a batch handler
// of the same size: the batch handler gets the messages that unwrap, in
// order, and a message failed here gets its own error, the others theirs.
func TestUnwrapSNSBatch(t *testing.T) {
	t.Parallel()
	const allowed, other = "arn:aws:sns:eu-west-1:123456789012:orders", "arn:aws:sns:eu-west-1:999999999999:evil"
	envelope := func(topic, inner string) string {
		return `{"Type":"Notification","MessageId":"m","TopicArn":"` + topic + `","Message":"` + inner + `"}`
	}
	var got []string
	inv := invokerFunc(func(_ context.Context, event []byte) ([]byte, error) {
		var ev events.SQSEvent
		if err := json.Unmarshal(event, &ev); err != nil {
			return nil, err
		}
		for _, r := range ev.Records {
			got = append(got, r.Body)
		}
		return []byte(`{"batchItemFailures":[{"itemIdentifier":"c"}]}`), nil
	})
	b, err := NewBatcher(BatchConfig{Size: 5, Window: time.Second}, inv)
	if err != nil {
		t.Fatal(err)
	}
	h := UnwrapSNS(b, SNSConfig{TopicARNs: []string{allowed}}, zap.NewNop())
	bh, ok := h.(BatchHandler)
	if !ok {
		t.Fatalf("UnwrapSNS of a batch handler is a %T, not a BatchHandler", h)
	}
	if size, window := bh.Batching(); size != 5 || window != time.Second {
		t.Errorf("Batching %d, %s; want the batch handler's 5, 1s", size, window)
	}
	msgs := []*message.Message{
		{ID: "a", Body: envelope(allowed, "one")}, {ID: "b", Body: envelope(other, "evil")},
		{ID: "c", Body: "plain"}, {ID: "d", Body: envelope(allowed, "two")},
	}
	errs := bh.HandleBatch(t.Context(), msgs)
	if strings.Join(got, ",") != "one,plain,two" {
		t.Errorf("batch handler got %q, want one,plain,two", got)
	}
	if errs[0] != nil || !errors.Is(errs[1], ErrSNSTopic) || errs[2] == nil || errs[3] != nil {
		t.Errorf("errors %v; want nil, ErrSNSTopic, the function's failure, nil", errs)
	}
}
