// Package line owns the format every tool shares: one message as one JSON
// object per line, the same object that is written when a queue is saved,
// read when one is loaded, and given to a filter. It converts between
// that object and the pipeline's message, and SQS's send entries.
package line

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/message"
)

// MaxMessageSize is SQS's limit on one message, and on one batch of them:
// the body plus every message attribute's name, data type and value.
const MaxMessageSize = 1 << 20

// MaxAttributes is how many message attributes SQS accepts on a message.
const MaxAttributes = 10

// System attributes a line keeps that a send can set again.
const (
	AttrMessageGroupID         = string(types.MessageSystemAttributeNameMessageGroupId)
	AttrMessageDeduplicationID = string(types.MessageSystemAttributeNameMessageDeduplicationId)
	AttrAWSTraceHeader         = string(types.MessageSystemAttributeNameAWSTraceHeader)
)

// Line is one message, as one JSON object per line.
type Line struct {
	MessageID string `json:"message_id"`
	Body      string `json:"body"`
	// MD5OfBody is the hex MD5 of Body, as SQS computes it; informative
	// (a body edited on the way no longer matches, and is sent as it is).
	MD5OfBody string `json:"md5_of_body"`
	// Attributes are the system attributes SQS returned with the message:
	// SentTimestamp, ApproximateReceiveCount,
	// ApproximateFirstReceiveTimestamp, SenderId, SequenceNumber,
	// MessageGroupId, MessageDeduplicationId, AWSTraceHeader,
	// DeadLetterQueueSourceArn, those that are present.
	Attributes map[string]string `json:"attributes,omitempty"`
	// MessageAttributes are the sender's.
	MessageAttributes map[string]Attribute `json:"message_attributes,omitempty"`
	// QueueURL is the queue the message was received from.
	QueueURL string `json:"queue_url"`
}

// Attribute is one message attribute: a String or Number (or a custom
// type based on them, "Number.float") has StringValue, a Binary one
// BinaryValue, written as base64.
type Attribute struct {
	DataType    string `json:"data_type"`
	StringValue string `json:"string_value,omitempty"`
	BinaryValue []byte `json:"binary_value,omitempty"`
}

// FromMessage is the line of a received message.
func FromMessage(m *message.Message) Line {
	l := Line{
		MessageID:  m.ID,
		Body:       m.Body,
		MD5OfBody:  MD5(m.Body),
		Attributes: maps.Clone(m.SystemAttributes),
		QueueURL:   m.QueueURL,
	}
	if len(m.Attributes) > 0 {
		l.MessageAttributes = make(map[string]Attribute, len(m.Attributes))
		for name, a := range m.Attributes {
			l.MessageAttributes[name] = Attribute{
				DataType: aws.ToString(a.DataType), StringValue: aws.ToString(a.StringValue), BinaryValue: a.BinaryValue,
			}
		}
	}
	return l
}

// MD5 is the hex MD5 of a body, as SQS reports it in MD5OfBody.
func MD5(body string) string {
	sum := md5.Sum([]byte(body))
	return hex.EncodeToString(sum[:])
}

// GroupID is the line's MessageGroupId, "" when it has none.
func (l *Line) GroupID() string { return l.Attributes[AttrMessageGroupID] }

// DeduplicationID is the line's MessageDeduplicationId, "" when none.
func (l *Line) DeduplicationID() string { return l.Attributes[AttrMessageDeduplicationID] }

// Entry is the line as an entry of a SendMessageBatch: body, message
// attributes, MessageGroupId, AWSTraceHeader and, for a FIFO queue,
// MessageDeduplicationId (a standard queue refuses one).
func (l *Line) Entry(id string, fifo bool) types.SendMessageBatchRequestEntry {
	e := types.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(l.Body)}
	if len(l.MessageAttributes) > 0 {
		e.MessageAttributes = make(map[string]types.MessageAttributeValue, len(l.MessageAttributes))
		for name, a := range l.MessageAttributes {
			v := types.MessageAttributeValue{DataType: aws.String(a.DataType), BinaryValue: a.BinaryValue}
			if a.BinaryValue == nil {
				v.StringValue = aws.String(a.StringValue)
			}
			e.MessageAttributes[name] = v
		}
	}
	if g := l.GroupID(); g != "" {
		e.MessageGroupId = aws.String(g)
	}
	if d := l.DeduplicationID(); d != "" && fifo {
		e.MessageDeduplicationId = aws.String(d)
	}
	if t := l.Attributes[AttrAWSTraceHeader]; t != "" {
		e.MessageSystemAttributes = map[string]types.MessageSystemAttributeValue{
			AttrAWSTraceHeader: {DataType: aws.String("String"), StringValue: aws.String(t)},
		}
	}
	return e
}

// Size is the message's size as SQS counts it against MaxMessageSize.
func (l *Line) Size() int {
	n := len(l.Body)
	for name, a := range l.MessageAttributes {
		n += len(name) + len(a.DataType) + len(a.StringValue) + len(a.BinaryValue)
	}
	return n
}

// Check reports what SQS would refuse in the line before it is sent: an
// empty body, characters SQS does not accept, a malformed or missing
// attribute value, more than MaxAttributes, more than MaxMessageSize.
func (l *Line) Check() error {
	if l.Body == "" {
		return fmt.Errorf("body is empty: SQS needs at least one character")
	}
	if r, ok := validText(l.Body); !ok {
		return fmt.Errorf("body has the character %U, which SQS does not accept", r)
	}
	if len(l.MessageAttributes) > MaxAttributes {
		return fmt.Errorf("%d message attributes: SQS accepts at most %d", len(l.MessageAttributes), MaxAttributes)
	}
	for name, a := range l.MessageAttributes {
		if err := checkAttribute(name, a); err != nil {
			return fmt.Errorf("message attribute %q: %w", name, err)
		}
	}
	if n := l.Size(); n > MaxMessageSize {
		return fmt.Errorf("message is %d bytes (body and attributes): SQS accepts at most %d", n, MaxMessageSize)
	}
	return nil
}

func checkAttribute(name string, a Attribute) error {
	if name == "" || len(name) > 256 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != "" {
		return fmt.Errorf("a name has 1 to 256 letters, digits, '_', '-' or '.'")
	}
	base, _, _ := strings.Cut(a.DataType, ".")
	switch base {
	case "String", "Number":
		if a.BinaryValue != nil || a.StringValue == "" {
			return fmt.Errorf("data_type %s needs a string_value and no binary_value", a.DataType)
		}
		if r, ok := validText(a.StringValue); !ok {
			return fmt.Errorf("string_value has the character %U, which SQS does not accept", r)
		}
	case "Binary":
		if a.StringValue != "" || len(a.BinaryValue) == 0 {
			return fmt.Errorf("data_type %s needs a binary_value (base64) and no string_value", a.DataType)
		}
	default:
		return fmt.Errorf("data_type %q: it must be String, Number or Binary, optionally with a .suffix", a.DataType)
	}
	return nil
}

// validText reports whether SQS accepts every character of s (#x9, #xA,
// #xD, #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF); if not, the first
// it refuses.
func validText(s string) (rune, bool) {
	for _, r := range s {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return r, false
		}
	}
	return 0, true
}

// Marshal is the line's JSON object, without the newline. HTML
// characters are kept as they are, as jq would print them.
func Marshal(l *Line) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
