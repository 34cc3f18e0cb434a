package sqsworker

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
)

// Message is one received SQS message, as a handler sees it. The worker
// owns its lease: a handler must not delete the message or change its
// visibility itself.
type Message struct {
	// ID is SQS's MessageId.
	ID string
	// Body is the message body.
	Body string
	// Attributes are SQS's system attributes (SentTimestamp,
	// ApproximateReceiveCount, MessageGroupId, AWSTraceHeader, …), all
	// of them.
	Attributes map[string]string
	// MessageAttributes are the attributes the sender set.
	MessageAttributes map[string]types.MessageAttributeValue
	// ReceiveCount is SQS's ApproximateReceiveCount: 1 on the first
	// delivery.
	ReceiveCount int
	// SentAt is when SQS accepted the message (SentTimestamp); zero when
	// SQS did not say.
	SentAt time.Time
	// FirstReceivedAt is when the message was first received by anyone
	// (ApproximateFirstReceiveTimestamp).
	FirstReceivedAt time.Time
	// ReceivedAt is when this worker received it: its lease starts here.
	ReceivedAt time.Time
	// GroupID is the FIFO MessageGroupId; empty on a standard queue.
	GroupID string
	// DeduplicationID is the FIFO MessageDeduplicationId.
	DeduplicationID string
	// QueueURL is the queue it came from.
	QueueURL string
}

// StringAttribute returns the value of a String or Number message
// attribute, and whether the message has it.
func (m *Message) StringAttribute(name string) (string, bool) {
	v, ok := m.MessageAttributes[name]
	if !ok || v.StringValue == nil {
		return "", false
	}
	return *v.StringValue, true
}

// Handler processes one message. A nil error is success: the message is
// deleted. Any other error is failure: the message comes back after a
// delay (see RetryAfter, DeadLetter, Unavailable). ctx is cancelled when
// the message's lease is lost, the handler's timeout passes, or the
// worker is stopped with StopAndCancel; a handler should return soon
// after. A panic counts as a failure.
type Handler interface {
	HandleMessage(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// HandleMessage calls f.
func (f HandlerFunc) HandleMessage(ctx context.Context, m *Message) error { return f(ctx, m) }

// handlerAdapter is h as the pipeline calls it.
type handlerAdapter struct{ h Handler }

// internalHandler is a handler of this module's own, the worker binary's
// built-in handlers: the pipeline calls the handler Internal returns as
// it is, with the message as received (receipt handle included) and, for
// a batch handler, a batch at a time.
type internalHandler interface{ Internal() handler.Handler }

// pipelineHandler is h as the pipeline calls it.
func pipelineHandler(h Handler) handler.Handler {
	if in, ok := h.(internalHandler); ok {
		return in.Internal()
	}
	return handlerAdapter{h: h}
}

func (a handlerAdapter) Handle(ctx context.Context, m *message.Message) error {
	return a.h.HandleMessage(ctx, &Message{
		ID: m.ID, Body: m.Body, Attributes: m.SystemAttributes, MessageAttributes: m.Attributes,
		ReceiveCount: m.ReceiveCount, SentAt: m.SentAt, FirstReceivedAt: m.FirstReceivedAt, ReceivedAt: m.ReceivedAt,
		GroupID: m.GroupID, DeduplicationID: m.DeduplicationID, QueueURL: m.QueueURL,
	})
}
