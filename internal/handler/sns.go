package handler

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

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

// SNSConfig configures UnwrapSNS.
type SNSConfig struct {
	// TopicARNs, when set, are the topics whose envelopes are unwrapped:
	// an envelope naming another topic fails its message (ErrSNSTopic),
	// which comes back after the retry backoff and ends in the
	// dead-letter queue. Defaults to none: any envelope is unwrapped,
	// whoever sent it to the queue and whichever topic it names.
	TopicARNs []string
}

// ErrSNSTopic is the failure of a message whose SNS envelope names a topic
// that SNSConfig.TopicARNs does not list.
var ErrSNSTopic = errors.New("SNS envelope from a topic not allowed")

// Attributes UnwrapSNS sets from the envelope. A message that was not
// unwrapped never has them: anyone who may send to the queue could set
// them on a message of their own.
const (
	snsTopicArnAttr = "SNS-Topic-Arn"
	snsSubjectAttr  = "SNS-Subject"
)

// CheckTopicARN checks one entry of SNSConfig.TopicARNs:
// arn:PARTITION:sns:REGION:ACCOUNT:TOPIC.
func CheckTopicARN(arn string) error {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sns" || slices.Contains(parts, "") {
		return fmt.Errorf("%q is not an SNS topic ARN: want arn:aws:sns:REGION:ACCOUNT:TOPIC", arn)
	}
	return nil
}

// UnwrapSNS hands h the notification inside an SNS envelope instead of the
// envelope, so the same handler works with and without raw message delivery.
// The envelope's message attributes become the message's attributes, along
// with SNS-Topic-Arn and SNS-Subject. Other bodies pass through, without
// SNS-Topic-Arn and SNS-Subject attributes of their own.
//
// A BatchHandler stays one: each message of a batch is unwrapped, and
// those that fail here are left out of the batch h gets.
func UnwrapSNS(h Handler, cfg SNSConfig, logger *zap.Logger) Handler {
	u := &snsUnwrap{next: h, allowed: slices.Clone(cfg.TopicARNs), log: logger.Named("sns")}
	if b, ok := h.(BatchHandler); ok {
		return snsUnwrapBatch{snsUnwrap: u, batch: b}
	}
	return u
}

type snsUnwrap struct {
	next    Handler
	allowed []string
	log     *zap.Logger
}

type snsUnwrapBatch struct {
	*snsUnwrap
	batch BatchHandler
}

func (u *snsUnwrap) Handle(ctx context.Context, msg *message.Message) error {
	inner, err := u.unwrap(msg)
	if err != nil {
		return err
	}
	return u.next.Handle(ctx, inner)
}

// HandleBatch hands the batch handler the messages that unwrap.
func (u snsUnwrapBatch) HandleBatch(ctx context.Context, msgs []*message.Message) []error {
	errs := make([]error, len(msgs))
	inner := make([]*message.Message, 0, len(msgs))
	at := make([]int, 0, len(msgs))
	for i, msg := range msgs {
		m, err := u.unwrap(msg)
		if err != nil {
			errs[i] = err
			continue
		}
		inner, at = append(inner, m), append(at, i)
	}
	if len(inner) == 0 {
		return errs
	}
	got := u.batch.HandleBatch(ctx, inner)
	for j, i := range at {
		if j < len(got) {
			errs[i] = got[j]
		}
	}
	return errs
}

// Batching is the batch handler's.
func (u snsUnwrapBatch) Batching() (size int, window time.Duration) { return u.batch.Batching() }

// unwrap is the message to hand on for msg, or why msg fails here.
func (u *snsUnwrap) unwrap(msg *message.Message) (*message.Message, error) {
	inner, ok := unwrapSNS(msg)
	if !ok {
		return withoutSNSAttributes(msg), nil
	}
	topic, _ := inner.StringAttribute(snsTopicArnAttr)
	if len(u.allowed) > 0 && !slices.Contains(u.allowed, topic) {
		u.log.Warn("SNS envelope names a topic not allowed: failing the message, which ends in the dead-letter queue if the queue has one",
			zap.String("message_id", msg.ID), zap.String("topic_arn", topic), zap.Strings("allowed", u.allowed))
		return nil, fmt.Errorf("message %s: %w: %s", msg.ID, ErrSNSTopic, topic)
	}
	return inner, nil
}

// withoutSNSAttributes is msg, or a copy of it without the attributes an
// unwrapped envelope sets.
func withoutSNSAttributes(msg *message.Message) *message.Message {
	_, topic := msg.Attributes[snsTopicArnAttr]
	_, subject := msg.Attributes[snsSubjectAttr]
	if !topic && !subject {
		return msg
	}
	out := *msg
	out.Attributes = maps.Clone(msg.Attributes)
	delete(out.Attributes, snsTopicArnAttr)
	delete(out.Attributes, snsSubjectAttr)
	return &out
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
	out.Attributes[snsTopicArnAttr] = types.MessageAttributeValue{DataType: ptr("String"), StringValue: ptr(env.TopicArn)}
	delete(out.Attributes, snsSubjectAttr)
	if env.Subject != "" {
		out.Attributes[snsSubjectAttr] = types.MessageAttributeValue{DataType: ptr("String"), StringValue: ptr(env.Subject)}
	}
	return &out, true
}

func ptr(s string) *string { return &s }
