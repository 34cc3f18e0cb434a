package redrive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// AttrDeadLetterQueueSourceArn is the system attribute SQS sets on a
// message it moved to a dead-letter queue: the queue it came from.
const AttrDeadLetterQueueSourceArn = "DeadLetterQueueSourceArn"

// noTarget says a message's target queue cannot be told: it has no
// DeadLetterQueueSourceArn and the dead-letter queue has no single
// source queue. Naming the target (Config.To) is the way out.
func noTarget(format string, args ...any) error {
	return &config.FieldError{Field: "To", Msg: "is needed: " + fmt.Sprintf(format, args...)}
}

// target is a queue messages are moved to.
type target struct {
	url, name string
	fifo      bool
}

// router finds each message's target: Config.To, else the queue its
// DeadLetterQueueSourceArn names, else the dead-letter queue's one
// source queue.
type router struct {
	api     API
	from    sqsapi.Queue
	to      *target
	byARN   map[string]*target
	byURL   map[string]*target
	sources []string
	read    bool // sources were looked up
}

func newRouter(api API, from sqsapi.Queue, to *sqsapi.Queue) *router {
	r := &router{api: api, from: from, byARN: map[string]*target{}, byURL: map[string]*target{}}
	if to != nil {
		r.to = targetOf(*to)
	}
	return r
}

func targetOf(q sqsapi.Queue) *target {
	return &target{url: q.URL, name: q.Name(), fifo: q.Attributes["FifoQueue"] == "true" || strings.HasSuffix(q.URL, ".fifo")}
}

func (r *router) route(ctx context.Context, msg *message.Message) (*target, error) {
	if r.to != nil {
		return r.to, nil
	}
	if arn := msg.SystemAttributes[AttrDeadLetterQueueSourceArn]; arn != "" {
		if t, ok := r.byARN[arn]; ok {
			return t, nil
		}
		url, err := sqsapi.QueueURLOfARN(ctx, r.api, arn)
		if err != nil {
			return nil, fmt.Errorf("message %s came from %s (its %s), which cannot be found: %w",
				msg.ID, arn, AttrDeadLetterQueueSourceArn, err)
		}
		t, err := r.describe(ctx, url)
		if err != nil {
			return nil, err
		}
		r.byARN[arn] = t
		return t, nil
	}
	if !r.read {
		sources, err := sqsapi.DeadLetterSources(ctx, r.api, r.from)
		if err != nil {
			return nil, err
		}
		r.sources, r.read = sources, true
	}
	switch len(r.sources) {
	case 1:
		return r.describe(ctx, r.sources[0])
	case 0:
		return nil, noTarget("message %s has no %s, and no queue names %s as its dead-letter queue",
			msg.ID, AttrDeadLetterQueueSourceArn, r.from.Name())
	}
	names := make([]string, len(r.sources))
	for i, u := range r.sources {
		names[i] = sqsapi.QueueName(u)
	}
	return nil, noTarget("message %s has no %s, and %s is the dead-letter queue of %d queues (%s): name the one to move to",
		msg.ID, AttrDeadLetterQueueSourceArn, r.from.Name(), len(r.sources), strings.Join(names, ", "))
}

func (r *router) describe(ctx context.Context, url string) (*target, error) {
	if t, ok := r.byURL[url]; ok {
		return t, nil
	}
	q, err := sqsapi.DescribeQueue(ctx, r.api, url)
	if err != nil {
		return nil, fmt.Errorf("read the target queue %s: %w", sqsapi.QueueName(url), err)
	}
	t := targetOf(q)
	r.byURL[url] = t
	return t, nil
}

// DeduplicationID is the deduplication id of a message's copy sent into
// a FIFO queue: the dead-letter message's own id, so that two distinct
// messages with the same body both arrive under content-based
// deduplication, and a message sent again (a redrive run again after a
// crash, within SQS's five-minute window) arrives once. An id that SQS
// would not take as a deduplication id is replaced by its SHA-256.
func DeduplicationID(messageID string) string {
	if validDedupID(messageID) {
		return messageID
	}
	sum := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(sum[:])
}

// validDedupID: 1 to 128 letters, digits and ASCII punctuation.
func validDedupID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
