package handler

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/message"
)

// snsEnvelope is the JSON SNS wraps a notification in when it delivers to
// SQS without raw message delivery.
type snsEnvelope struct {
	Type              string
	MessageID         string `json:"MessageId"`
	TopicArn          string
	Subject           string
	Message           *string
	MessageAttributes map[string]snsAttribute
}

type snsAttribute struct {
	Type  string
	Value string
}

// UnwrapSNS hands h the notification inside an SNS envelope instead of the
// envelope, so the same handler works with and without raw message delivery.
// The envelope's message attributes become the message's attributes, along
// with SNS-Topic-Arn and SNS-Subject. Other bodies pass through unchanged.
func UnwrapSNS(h Handler) Handler {
	return Func(func(ctx context.Context, msg *message.Message) error {
		if inner, ok := unwrapSNS(msg); ok {
			return h.Handle(ctx, inner)
		}
		return h.Handle(ctx, msg)
	})
}

// unwrapSNS returns a copy of msg with the envelope removed; msg itself is
// shared with the rest of the pipeline and must not change.
func unwrapSNS(msg *message.Message) (*message.Message, bool) {
	// Cheap checks first: most bodies are not envelopes and parsing them
	// all would cost a full JSON decode per message.
	body := strings.TrimSpace(msg.Body)
	if !strings.HasPrefix(body, "{") || !strings.Contains(body, `"TopicArn"`) {
		return nil, false
	}
	var env snsEnvelope
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return nil, false
	}
	if env.Type != "Notification" || env.Message == nil || env.TopicArn == "" || env.MessageID == "" {
		return nil, false
	}

	out := *msg
	out.Body = *env.Message
	out.Attributes = make(map[string]types.MessageAttributeValue, len(msg.Attributes)+len(env.MessageAttributes)+2)
	maps.Copy(out.Attributes, msg.Attributes)
	for name, a := range env.MessageAttributes {
		switch {
		case strings.HasPrefix(a.Type, "String"), strings.HasPrefix(a.Type, "Number"):
			// Includes String.Array, whose Value is a JSON array as text.
			out.Attributes[name] = types.MessageAttributeValue{DataType: ptr(a.Type), StringValue: ptr(a.Value)}
		case strings.HasPrefix(a.Type, "Binary"):
			b, err := base64.StdEncoding.DecodeString(a.Value)
			if err != nil {
				continue // not what SNS sends; dropping it beats failing the message
			}
			out.Attributes[name] = types.MessageAttributeValue{DataType: ptr(a.Type), BinaryValue: b}
		}
	}
	out.Attributes["SNS-Topic-Arn"] = types.MessageAttributeValue{DataType: ptr("String"), StringValue: ptr(env.TopicArn)}
	if env.Subject != "" {
		out.Attributes["SNS-Subject"] = types.MessageAttributeValue{DataType: ptr("String"), StringValue: ptr(env.Subject)}
	}
	return &out, true
}

func ptr(s string) *string { return &s }
