// Package message holds the one type every stage of the pipeline passes on:
// a received SQS message with what the worker needs to know about it.
package message

import (
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Message is one received SQS message. It is created by fetch and read by
// the pool, the handler, visibility and ack; nobody mutates it after fetch
// hands it on.
type Message struct {
	ID            string
	ReceiptHandle string
	Body          string
	QueueURL      string
	// ReceivedAt is when this worker received it (the lease starts here).
	ReceivedAt time.Time
	// ReceiveCount is SQS's ApproximateReceiveCount (1 on first delivery).
	ReceiveCount int
	// FirstReceivedAt is SQS's ApproximateFirstReceiveTimestamp, or
	// ReceivedAt when SQS did not send it.
	FirstReceivedAt time.Time
	// SentAt is SQS's SentTimestamp, zero when absent.
	SentAt time.Time
	// GroupID is the FIFO MessageGroupId, empty on standard queues.
	GroupID string
	// DeduplicationID is the FIFO MessageDeduplicationId.
	DeduplicationID string
	// SystemAttributes are SQS's own attributes (ApproximateReceiveCount, …).
	SystemAttributes map[string]string
	// Attributes are the sender's message attributes.
	Attributes map[string]types.MessageAttributeValue
}

// FromSQS converts a received message. receivedAt is the time the
// ReceiveMessage call returned.
func FromSQS(queueURL string, m types.Message, receivedAt time.Time) *Message {
	msg := &Message{
		ID:               deref(m.MessageId),
		ReceiptHandle:    deref(m.ReceiptHandle),
		Body:             deref(m.Body),
		QueueURL:         queueURL,
		ReceivedAt:       receivedAt,
		ReceiveCount:     1,
		FirstReceivedAt:  receivedAt,
		SystemAttributes: m.Attributes,
		Attributes:       m.MessageAttributes,
	}
	if n, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil && n > 0 {
		msg.ReceiveCount = n
	}
	if t, ok := millis(m.Attributes[string(types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp)]); ok {
		msg.FirstReceivedAt = t
	}
	if t, ok := millis(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)]); ok {
		msg.SentAt = t
	}
	msg.GroupID = m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]
	msg.DeduplicationID = m.Attributes[string(types.MessageSystemAttributeNameMessageDeduplicationId)]
	return msg
}

// StringAttribute returns a String or Number message attribute's value.
func (m *Message) StringAttribute(name string) (string, bool) {
	v, ok := m.Attributes[name]
	if !ok || v.StringValue == nil {
		return "", false
	}
	return *v.StringValue, true
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func millis(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}
