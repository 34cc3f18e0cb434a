// Package setup creates a queue with its dead-letter queue and redrive
// policy, and subscribes it to SNS topics with the queue policy that lets
// them send to it. It reads what exists first: run again, it changes
// nothing; when what exists conflicts with what is asked, it changes
// nothing and says what differs.
package setup

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

const (
	// DefaultMaxReceive is how many receives a message gets before it
	// moves to the dead-letter queue.
	DefaultMaxReceive = 5
	// dlqRetention is what a created dead-letter queue keeps messages
	// for: SQS's longest, 14 days, so that a message that failed late in
	// its source queue's retention is still there to look at.
	dlqRetention = 14 * 24 * time.Hour
)

// SQS is what setup needs from SQS.
type SQS interface {
	sqsapi.QueueAPI
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, opts ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	SetQueueAttributes(ctx context.Context, in *sqs.SetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.SetQueueAttributesOutput, error)
}

// SNS is what subscribing needs from SNS.
type SNS interface {
	sns.ListSubscriptionsByTopicAPIClient
	Subscribe(ctx context.Context, in *sns.SubscribeInput, opts ...func(*sns.Options)) (*sns.SubscribeOutput, error)
}

// Config is what to set up.
type Config struct {
	// Queue is the queue's name. Required. A name ending in .fifo is a
	// FIFO queue.
	Queue string
	// DLQ is the dead-letter queue's name. Defaults to Queue with -dlq
	// before any .fifo: orders-dlq, orders-dlq.fifo.
	DLQ string
	// MaxReceive is how many receives a message gets before SQS moves it
	// to the dead-letter queue; 0 means no dead-letter queue.
	MaxReceive int
	// FIFO asks for a FIFO queue (its name must end in .fifo).
	FIFO bool
	// ContentBasedDedup turns on content-based deduplication (FIFO only).
	ContentBasedDedup bool
	// VisibilityTimeout is the queue's; 0 leaves SQS's default (30s), or
	// what an existing queue has.
	VisibilityTimeout time.Duration
	// Subscribe are SNS topic ARNs to subscribe the queue to.
	Subscribe []string
}

var (
	queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,75}(\.fifo)?$`)
	topicARN  = regexp.MustCompile(`^arn:[a-z-]+:sns:[a-z0-9-]*:[0-9]*:[A-Za-z0-9_-]{1,256}(\.fifo)?$`)
)

func (c *Config) fifo() bool { return c.FIFO || strings.HasSuffix(c.Queue, ".fifo") }

func (c *Config) dlqName() string {
	if c.DLQ != "" {
		return c.DLQ
	}
	base, fifo := strings.CutSuffix(c.Queue, ".fifo")
	if fifo {
		return base + "-dlq.fifo"
	}
	return base + "-dlq"
}

// Validate checks the fields, naming the one that is wrong.
func (c *Config) Validate() error {
	fe := func(field, format string, args ...any) error {
		return &config.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Queue == "":
		return fe("Queue", "is required: the name of the queue to set up")
	case !queueName.MatchString(c.Queue) || len(c.Queue) > 80:
		return fe("Queue", "%q is not a queue name: up to 80 letters, digits, '-' and '_', and .fifo at the end for a FIFO queue", c.Queue)
	case c.FIFO && !strings.HasSuffix(c.Queue, ".fifo"):
		return fe("Queue", "%q is not a FIFO queue's name: a FIFO queue's name ends in .fifo (%s.fifo)", c.Queue, c.Queue)
	case c.MaxReceive < 0 || c.MaxReceive > 1000:
		return fe("MaxReceive", "is %d: it must be between 1 and 1000 (0: no dead-letter queue)", c.MaxReceive)
	case c.MaxReceive > 0 && (!queueName.MatchString(c.dlqName()) || len(c.dlqName()) > 80):
		return fe("DLQ", "%q is not a queue name: up to 80 letters, digits, '-' and '_', and .fifo at the end for a FIFO queue", c.dlqName())
	case c.MaxReceive > 0 && c.fifo() != strings.HasSuffix(c.dlqName(), ".fifo"):
		return fe("DLQ", "%q: the dead-letter queue of a %s queue is a %s queue too, its name ending in .fifo only for FIFO", c.dlqName(), kind(c.fifo()), kind(c.fifo()))
	case c.MaxReceive > 0 && c.dlqName() == c.Queue:
		return fe("DLQ", "%q is the queue itself: name another queue", c.DLQ)
	case c.ContentBasedDedup && !c.fifo():
		return fe("ContentBasedDedup", "is only for FIFO queues: name the queue NAME.fifo")
	case c.VisibilityTimeout < 0 || c.VisibilityTimeout > sqsapi.MaxVisibility || c.VisibilityTimeout%time.Second != 0:
		return fe("VisibilityTimeout", "is %s: it must be whole seconds between 0s and 12h", c.VisibilityTimeout)
	}
	for _, t := range c.Subscribe {
		if !topicARN.MatchString(t) {
			return fe("Subscribe", "%q is not an SNS topic ARN: want arn:aws:sns:REGION:ACCOUNT:TOPIC", t)
		}
	}
	return nil
}

func kind(fifo bool) string {
	if fifo {
		return "FIFO"
	}
	return "standard"
}

// Result is what a run found and did.
type Result struct {
	QueueURL, DLQURL string
	// Changes are what was created or set, in order; none when everything
	// was already as asked.
	Changes []string
}

// Run sets up what cfg asks for. It first reads what exists and refuses,
// changing nothing, when an existing queue conflicts with cfg (another
// visibility timeout, dead-letter queue or receive count, content-based
// deduplication off). snsAPI may be nil without topics.
func Run(ctx context.Context, cfg Config, sqsAPI SQS, snsAPI SNS) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	s := &setup{cfg: cfg, sqs: sqsAPI, sns: snsAPI}
	var dlq, queue *sqsapi.Queue
	var err error
	if cfg.MaxReceive > 0 {
		if dlq, err = s.find(ctx, cfg.dlqName()); err != nil {
			return Result{}, err
		}
	}
	if queue, err = s.find(ctx, cfg.Queue); err != nil {
		return Result{}, err
	}
	if err := s.conflicts(queue, dlq); err != nil {
		return Result{}, err
	}

	if cfg.MaxReceive > 0 {
		if dlq, err = s.ensure(ctx, cfg.dlqName(), dlq, s.dlqAttributes()); err != nil {
			return s.result, err
		}
		s.result.DLQURL = dlq.URL
	}
	if queue, err = s.ensure(ctx, cfg.Queue, queue, s.queueAttributes(dlq)); err != nil {
		return s.result, err
	}
	s.result.QueueURL = queue.URL
	if len(cfg.Subscribe) > 0 {
		if err := s.allowTopics(ctx, queue); err != nil {
			return s.result, err
		}
		for _, topic := range cfg.Subscribe {
			if err := s.subscribe(ctx, queue, topic); err != nil {
				return s.result, err
			}
		}
	}
	return s.result, nil
}

type setup struct {
	cfg    Config
	sqs    SQS
	sns    SNS
	result Result
}

func (s *setup) changed(format string, args ...any) {
	s.result.Changes = append(s.result.Changes, fmt.Sprintf(format, args...))
}

// find reads a queue, nil when it does not exist.
func (s *setup) find(ctx context.Context, name string) (*sqsapi.Queue, error) {
	url, err := sqsapi.GetQueueURL(ctx, s.sqs, name, "")
	if sqsapi.IsQueueMissing(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up queue %s: %w", name, err)
	}
	q, err := sqsapi.DescribeQueue(ctx, s.sqs, url)
	if err != nil {
		return nil, fmt.Errorf("read the attributes of queue %s: %w", name, err)
	}
	return &q, nil
}

// conflicts compares what exists with what is asked, before anything
// is changed.
func (s *setup) conflicts(queue, dlq *sqsapi.Queue) error {
	if queue == nil {
		return nil
	}
	var diffs []string
	a := queue.Attributes
	if v := s.cfg.VisibilityTimeout; v > 0 && a["VisibilityTimeout"] != seconds(v) {
		diffs = append(diffs, fmt.Sprintf("visibility timeout %ss, not %ss", a["VisibilityTimeout"], seconds(v)))
	}
	if s.cfg.ContentBasedDedup && a["ContentBasedDeduplication"] != "true" {
		diffs = append(diffs, "content-based deduplication off, not on")
	}
	if rp := queue.RedrivePolicy; rp != nil && s.cfg.MaxReceive > 0 {
		if dlq == nil || rp.DeadLetterTargetARN != dlq.ARN {
			diffs = append(diffs, fmt.Sprintf("dead-letter queue %s, not %s", sqsapi.QueueName(rp.DeadLetterTargetARN), s.cfg.dlqName()))
		}
		if rp.MaxReceiveCount != s.cfg.MaxReceive {
			diffs = append(diffs, fmt.Sprintf("%d receives before the dead-letter queue, not %d", rp.MaxReceiveCount, s.cfg.MaxReceive))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("queue %s exists with %s: nothing was changed (ask for what it has, or change the queue first)",
			s.cfg.Queue, strings.Join(diffs, ", "))
	}
	return nil
}

func (s *setup) dlqAttributes() map[string]string {
	a := map[string]string{"MessageRetentionPeriod": seconds(dlqRetention)}
	if s.cfg.fifo() {
		a["FifoQueue"] = "true"
	}
	return a
}

func (s *setup) queueAttributes(dlq *sqsapi.Queue) map[string]string {
	a := map[string]string{}
	if s.cfg.fifo() {
		a["FifoQueue"] = "true"
	}
	if s.cfg.ContentBasedDedup {
		a["ContentBasedDeduplication"] = "true"
	}
	if s.cfg.VisibilityTimeout > 0 {
		a["VisibilityTimeout"] = seconds(s.cfg.VisibilityTimeout)
	}
	if dlq != nil {
		a["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`, dlq.ARN, s.cfg.MaxReceive)
	}
	return a
}

// ensure creates the queue with attrs, or gives an existing one the
// attributes it lacks (conflicts were refused before). On an existing
// queue only RedrivePolicy can be missing: the others have values, which
// conflicts compared.
func (s *setup) ensure(ctx context.Context, name string, q *sqsapi.Queue, attrs map[string]string) (*sqsapi.Queue, error) {
	if q == nil {
		out, err := s.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
		if err != nil {
			return nil, fmt.Errorf("create queue %s: %w", name, err)
		}
		url, err := sqsapi.CheckQueueURL("CreateQueue", aws.ToString(out.QueueUrl))
		if err != nil {
			return nil, fmt.Errorf("create queue %s: %w", name, err)
		}
		created, err := sqsapi.DescribeQueue(ctx, s.sqs, url)
		if err != nil {
			return nil, fmt.Errorf("read the attributes of queue %s: %w", name, err)
		}
		s.changed("created queue %s%s", name, describe(attrs))
		return &created, nil
	}
	if rp, ok := attrs["RedrivePolicy"]; ok && q.RedrivePolicy == nil {
		if err := s.set(ctx, q, map[string]string{"RedrivePolicy": rp}); err != nil {
			return nil, err
		}
		s.changed("set the redrive policy of %s:%s", name, describe(map[string]string{"RedrivePolicy": rp}))
	}
	return q, nil
}

func (s *setup) set(ctx context.Context, q *sqsapi.Queue, attrs map[string]string) error {
	if _, err := s.sqs.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(q.URL), Attributes: attrs}); err != nil {
		return fmt.Errorf("set the attributes of queue %s: %w", q.Name(), err)
	}
	for k, v := range attrs {
		q.Attributes[k] = v
	}
	return nil
}

// describe says what attributes ask for, for a change line.
func describe(attrs map[string]string) string {
	var parts []string
	if rp := sqsapi.ParseRedrivePolicy(attrs["RedrivePolicy"]); rp != nil {
		parts = append(parts, fmt.Sprintf("dead-letter queue %s after %d receives", sqsapi.QueueName(rp.DeadLetterTargetARN), rp.MaxReceiveCount))
	}
	if attrs["FifoQueue"] == "true" {
		parts = append(parts, "FIFO")
	}
	if attrs["ContentBasedDeduplication"] == "true" {
		parts = append(parts, "content-based deduplication")
	}
	if v, ok := attrs["VisibilityTimeout"]; ok {
		parts = append(parts, "visibility timeout "+v+"s")
	}
	if v, ok := attrs["MessageRetentionPeriod"]; ok {
		n, _ := strconv.Atoi(v)
		parts = append(parts, fmt.Sprintf("retention %d days", n/86400))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

// subscribe subscribes the queue to topic unless it already is.
func (s *setup) subscribe(ctx context.Context, q *sqsapi.Queue, topic string) error {
	if s.sns == nil {
		return errors.New("subscribing needs an SNS client")
	}
	p := sns.NewListSubscriptionsByTopicPaginator(s.sns, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list the subscriptions of topic %s: %w", topic, err)
		}
		for _, sub := range out.Subscriptions {
			if aws.ToString(sub.Protocol) == "sqs" && aws.ToString(sub.Endpoint) == q.ARN {
				return nil
			}
		}
	}
	if _, err := s.sns.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(topic), Protocol: aws.String("sqs"),
		Endpoint: aws.String(q.ARN), ReturnSubscriptionArn: true}); err != nil {
		return fmt.Errorf("subscribe queue %s to topic %s: %w", q.Name(), topic, err)
	}
	s.changed("subscribed queue %s to topic %s", q.Name(), topic)
	return nil
}

// allowTopics adds to the queue's policy a statement for each topic it
// does not yet let send to the queue, keeping the statements it has.
func (s *setup) allowTopics(ctx context.Context, q *sqsapi.Queue) error {
	policy, err := parsePolicy(q.Attributes[string(types.QueueAttributeNamePolicy)])
	if err != nil {
		return fmt.Errorf("read the policy of queue %s: %w", q.Name(), err)
	}
	var added []string
	for _, topic := range s.cfg.Subscribe {
		if !policy.allows(topic) {
			policy.allow(q.ARN, topic)
			added = append(added, topic)
		}
	}
	if len(added) == 0 {
		return nil
	}
	doc, err := policy.marshal()
	if err != nil {
		return err
	}
	if err := s.set(ctx, q, map[string]string{string(types.QueueAttributeNamePolicy): doc}); err != nil {
		return err
	}
	s.changed("let topic%s %s send to queue %s (queue policy)", plural(len(added)), strings.Join(added, ", "), q.Name())
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
