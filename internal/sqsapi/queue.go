package sqsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// QueueAPI is what looking a queue up takes.
type QueueAPI interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// QueueRef names a queue by URL or, when URL is empty, by name.
type QueueRef struct {
	URL, Name string
}

// ParseQueueRef reads a value that is either a queue URL or a queue name.
func ParseQueueRef(s string) QueueRef {
	if IsQueueURL(s) {
		return QueueRef{URL: s}
	}
	return QueueRef{Name: s}
}

// IsQueueURL reports whether s is an http(s) URL with a queue path.
func IsQueueURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && strings.Trim(u.Path, "/") != ""
}

func (r QueueRef) String() string {
	if r.URL != "" {
		return r.URL
	}
	return r.Name
}

// Counts are a queue's approximate message counts.
type Counts struct {
	Visible  int64 `json:"visible"`
	InFlight int64 `json:"in_flight"`
	Delayed  int64 `json:"delayed"`
}

// RedrivePolicy is a queue's dead-letter queue and after how many
// receives a message moves there.
type RedrivePolicy struct {
	DeadLetterTargetARN string `json:"dead_letter_target_arn"`
	MaxReceiveCount     int    `json:"max_receive_count"`
}

// Queue is what DescribeQueue reads of a queue.
type Queue struct {
	URL, ARN string
	Counts   Counts
	// RedrivePolicy is nil when the queue has no dead-letter queue (or
	// its policy cannot be read).
	RedrivePolicy *RedrivePolicy
	// Attributes are all of the queue's attributes as SQS returned them.
	Attributes map[string]string
}

// Name is the queue's name: the last part of its URL.
func (q Queue) Name() string { return QueueName(q.URL) }

// MaxReceiveCount is the redrive policy's, 0 without a dead-letter queue.
func (q Queue) MaxReceiveCount() int {
	if q.RedrivePolicy == nil {
		return 0
	}
	return q.RedrivePolicy.MaxReceiveCount
}

// QueueName is the last part of a queue URL or ARN.
func QueueName(urlOrARN string) string {
	s := strings.TrimRight(urlOrARN, "/")
	if i := strings.LastIndexAny(s, "/:"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// DescribeQueue reads a queue's attributes: its ARN, counts and redrive
// policy. An answer without the queue's ARN, which SQS always gives, is
// a *NotSQSError.
func DescribeQueue(ctx context.Context, api QueueAPI, queueURL string) (Queue, error) {
	out, err := api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	if err != nil {
		return Queue{}, notSQS(err, "GetQueueAttributes")
	}
	a := out.Attributes
	if a[string(types.QueueAttributeNameQueueArn)] == "" {
		return Queue{}, &NotSQSError{Action: "GetQueueAttributes", Problem: "returned no QueueArn"}
	}
	n := func(k types.QueueAttributeName) int64 { v, _ := strconv.ParseInt(a[string(k)], 10, 64); return v }
	return Queue{
		URL: queueURL,
		ARN: a[string(types.QueueAttributeNameQueueArn)],
		Counts: Counts{
			Visible:  n(types.QueueAttributeNameApproximateNumberOfMessages),
			InFlight: n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
			Delayed:  n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
		},
		RedrivePolicy: ParseRedrivePolicy(a[string(types.QueueAttributeNameRedrivePolicy)]),
		Attributes:    a,
	}, nil
}

// ParseRedrivePolicy reads a RedrivePolicy attribute; nil when there is
// none or it cannot be read.
func ParseRedrivePolicy(policy string) *RedrivePolicy {
	if policy == "" {
		return nil
	}
	var p struct {
		DeadLetterTargetArn string      `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.Number `json:"maxReceiveCount"` // SQS writes a number, older tools a string
	}
	if err := json.Unmarshal([]byte(policy), &p); err != nil {
		return nil
	}
	n, err := strconv.Atoi(p.MaxReceiveCount.String())
	if err != nil || n < 0 {
		return nil
	}
	return &RedrivePolicy{DeadLetterTargetARN: p.DeadLetterTargetArn, MaxReceiveCount: n}
}

// ResolveQueue turns ref into a URL (GetQueueUrl for a name) and reads the
// queue, so that a typo fails at start-up in one line, and so does an
// endpoint that is not SQS (a *NotSQSError): a queue it resolves always
// has a URL and an ARN. ref names the queue one way, by URL or by name,
// not both. endpoint is where api sends (Endpoint), "" for the SDK's own
// resolution.
func ResolveQueue(ctx context.Context, api QueueAPI, ref QueueRef, endpoint string) (Queue, error) {
	if ref.URL != "" && ref.Name != "" {
		return Queue{}, fmt.Errorf("queue named twice, by URL %s and by name %s: name it one way", ref.URL, ref.Name)
	}
	if ref.URL == "" && ref.Name == "" {
		return Queue{}, errors.New("no queue named: give its URL or its name")
	}
	where := "SQS"
	if endpoint != "" {
		where = endpoint
	}
	queueURL := ref.URL
	if queueURL == "" {
		u, err := GetQueueURL(ctx, api, ref.Name, "")
		if err != nil {
			return Queue{}, explainQueueError(err, ref.Name, endpoint, where)
		}
		queueURL = u
	}
	q, err := DescribeQueue(ctx, api, queueURL)
	if err != nil {
		return Queue{}, explainQueueError(err, queueURL, endpoint, where)
	}
	return q, nil
}

func explainQueueError(err error, queue, endpoint, where string) error {
	var ns *NotSQSError
	if errors.As(err, &ns) {
		if ns.Endpoint == "" {
			ns.Endpoint = endpoint
		}
		return ns
	}
	if IsQueueMissing(err) {
		return fmt.Errorf("queue %s does not exist at %s: create it (or check the queue URL or name, the region and the endpoint)", queue, where)
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg, "dial tcp") {
		msg = msg[i+2:]
	}
	return fmt.Errorf("cannot reach %s to look up queue %s: %s (check the endpoint, AWS_ENDPOINT_URL_SQS, credentials and network)", where, queue, msg)
}

// QueueURLOfARN finds the URL of the queue an ARN names
// (arn:aws:sqs:REGION:ACCOUNT:NAME), such as a redrive policy's target.
func QueueURLOfARN(ctx context.Context, api QueueAPI, arn string) (string, error) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sqs" {
		return "", fmt.Errorf("%q is not an SQS queue ARN", arn)
	}
	u, err := GetQueueURL(ctx, api, parts[5], parts[4])
	if err != nil {
		return "", fmt.Errorf("look up queue %s: %w", arn, err)
	}
	return u, nil
}

// SourcesAPI is what finding a dead-letter queue's sources takes.
type SourcesAPI interface {
	QueueAPI
	ListDeadLetterSourceQueues(ctx context.Context, in *sqs.ListDeadLetterSourceQueuesInput, opts ...func(*sqs.Options)) (*sqs.ListDeadLetterSourceQueuesOutput, error)
	ListQueues(ctx context.Context, in *sqs.ListQueuesInput, opts ...func(*sqs.Options)) (*sqs.ListQueuesOutput, error)
}

// DeadLetterSources returns the URLs of the queues whose redrive policy
// targets the queue dlq, sorted: ListDeadLetterSourceQueues, or, where the
// server does not offer it, a scan of every queue's redrive policy.
func DeadLetterSources(ctx context.Context, api SourcesAPI, dlq Queue) ([]string, error) {
	urls, err := listSources(ctx, api, dlq)
	if IsUnsupported(err) {
		urls, err = scanSources(ctx, api, dlq.ARN)
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(urls)
	return urls, nil
}

func listSources(ctx context.Context, api SourcesAPI, dlq Queue) ([]string, error) {
	var urls []string
	p := sqs.NewListDeadLetterSourceQueuesPaginator(api, &sqs.ListDeadLetterSourceQueuesInput{QueueUrl: aws.String(dlq.URL)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if IsUnsupported(err) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("list the source queues of %s: %w", dlq.Name(), err)
		}
		urls = append(urls, out.QueueUrls...)
	}
	return urls, nil
}

func scanSources(ctx context.Context, api SourcesAPI, dlqARN string) ([]string, error) {
	var urls []string
	p := sqs.NewListQueuesPaginator(api, &sqs.ListQueuesInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list queues to find the sources of %s: %w", QueueName(dlqARN), err)
		}
		for _, u := range out.QueueUrls {
			a, err := api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
				QueueUrl: aws.String(u), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
			})
			if IsQueueMissing(err) {
				continue // deleted since the listing
			}
			if err != nil {
				return nil, fmt.Errorf("read the redrive policy of %s: %w", QueueName(u), err)
			}
			if rp := ParseRedrivePolicy(a.Attributes[string(types.QueueAttributeNameRedrivePolicy)]); rp != nil && rp.DeadLetterTargetARN == dlqARN {
				urls = append(urls, u)
			}
		}
	}
	return urls, nil
}

// IsUnsupported reports whether the server does not offer the action
// (some SQS-compatible servers lack a few).
func IsUnsupported(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "InvalidAction", "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "UnknownOperationException":
		return true
	}
	return false
}
