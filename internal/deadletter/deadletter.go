// Package deadletter sends a message the handler marked as never able to
// succeed to the queue's dead-letter queue at once — same body, message
// attributes and FIFO group, the reason as one more attribute — so that it
// does not take every receive the redrive policy allows to get there.
package deadletter

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqsworker/sqsworker/internal/message"
)

// ReasonAttribute is the message attribute that carries the handler's
// reason on the dead-letter copy.
const ReasonAttribute = "sqsworker.dead_letter_reason"

// maxAttributes is SQS's limit of message attributes per message.
const maxAttributes = 10

// maxReasonBytes bounds the reason attribute.
const maxReasonBytes = 1024

// API is what the sender needs from SQS.
type API interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Sender sends messages to one dead-letter queue.
type Sender struct {
	api     API
	url     string
	fifo    bool
	counter *prometheus.CounterVec
	labels  *labels
}

// New creates a Sender to the queue dlqURL; counter counts what it sent
// by reason.
func New(api API, dlqURL string, counter *prometheus.CounterVec) *Sender {
	return &Sender{
		api: api, url: dlqURL, fifo: strings.HasSuffix(dlqURL, ".fifo"),
		counter: counter, labels: &labels{seen: map[string]bool{}},
	}
}

// URL is the dead-letter queue's URL.
func (s *Sender) URL() string { return s.url }

// Send copies msg to the dead-letter queue with reason. Into a FIFO queue
// the copy keeps its group, and its deduplication id is the source message
// id, so that a send retried after a lost answer is not a second copy.
func (s *Sender) Send(ctx context.Context, msg *message.Message, reason string) error {
	attrs := make(map[string]types.MessageAttributeValue, len(msg.Attributes)+1)
	for k, v := range msg.Attributes {
		attrs[k] = v
	}
	if len(attrs) < maxAttributes {
		attrs[ReasonAttribute] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(clip(reason))}
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(s.url), MessageBody: aws.String(msg.Body)}
	if len(attrs) > 0 {
		in.MessageAttributes = attrs
	}
	if s.fifo {
		in.MessageGroupId = aws.String(msg.GroupID)
		in.MessageDeduplicationId = aws.String(msg.ID)
	}
	if _, err := s.api.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("send message %s to the dead-letter queue %s: %w", msg.ID, s.url, err)
	}
	s.counter.WithLabelValues(s.labels.of(reason)).Inc()
	return nil
}

// clip keeps a reason within maxReasonBytes and valid UTF-8; an empty one
// says the handler gave none.
func clip(reason string) string {
	reason = strings.ToValidUTF8(strings.TrimSpace(reason), "\uFFFD")
	if reason == "" {
		return "unspecified"
	}
	if len(reason) > maxReasonBytes {
		reason = strings.ToValidUTF8(reason[:maxReasonBytes], "")
	}
	return reason
}

// labels keeps the reason label bounded: a short token (spaces read as
// underscores: "exit code 65" is exit_code_65) is its own label, up to
// maxLabels of them; anything else counts as "other".
type labels struct {
	mu   sync.Mutex
	seen map[string]bool
}

const maxLabels = 20

var token = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,40}$`)

func (l *labels) of(reason string) string {
	reason = strings.ReplaceAll(strings.TrimSpace(reason), " ", "_")
	if reason == "" {
		return "unspecified"
	}
	if !token.MatchString(reason) {
		return "other"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.seen[reason] {
		if len(l.seen) >= maxLabels {
			return "other"
		}
		l.seen[reason] = true
	}
	return reason
}
