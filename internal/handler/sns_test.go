package handler

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

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
			}))
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
