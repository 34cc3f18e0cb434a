package redrive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
	"github.com/sqsworker/sqsworker/internal/tools/redrive"
	"github.com/sqsworker/sqsworker/internal/tools/tooltest"
)

func describe(t *testing.T, url string) sqsapi.Queue {
	t.Helper()
	q, err := sqsapi.DescribeQueue(t.Context(), server.Client(), url)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// redriveCfg is a redrive of the dead-letter queue at dlqURL.
func redriveCfg(t *testing.T, dlqURL string) redrive.Config {
	return redrive.Config{Config: receive.Config{WaitTime: time.Second}, From: describe(t, dlqURL)}
}

// bodiesOf is the sorted bodies of received messages.
func bodiesOf(msgs []types.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = aws.ToString(m.Body)
	}
	slices.Sort(out)
	return out
}

func kindOf(l line.Line) string { return l.MessageAttributes["kind"].StringValue }

// TestRedriveMovesExactlyWhatTheFilterSelects: every message is read once;
// the matching messages arrive in the source queue, each once, attributes
// kept; the others are still in the dead-letter queue afterwards, visible.
func TestRedriveMovesExactlyWhatTheFilterSelects(t *testing.T) {
	t.Parallel()
	const n = 150
	q := tooltest.CreateQueue(t, server, "redrive-filter", sqstest.QueueOptions{MaxReceiveCount: 3})
	lines := tooltest.Lines(n, false)
	tooltest.Load(t, server, q.DLQURL, false, lines)
	var want []string
	for _, l := range lines {
		if kindOf(l) == "kind-1" {
			want = append(want, l.Body)
		}
	}
	slices.Sort(want)

	cfg := redriveCfg(t, q.DLQURL)
	cfg.Filter = `.message_attributes.kind.string_value == "kind-1" and (.attributes.SentTimestamp | length > 0)`
	var problems []redrive.Problem
	cfg.OnProblem = func(p redrive.Problem) { problems = append(problems, p) }
	report, err := redrive.Run(t.Context(), cfg, server.Client(), tooltest.Log(t))
	if err != nil || len(problems) > 0 {
		t.Fatalf("redrive: %v; problems %+v", err, problems)
	}
	if report.Read != n || report.Matched != len(want) || report.Moved != len(want) || report.Deleted != len(want) ||
		report.Kept != n-len(want) || report.ByTarget[q.Name] != len(want) || !report.AllRead {
		t.Errorf("report %+v; want %d read, %d moved to %s and deleted, %d kept", report, n, len(want), q.Name, n-len(want))
	}
	moved := tooltest.Collect(t, server, q.URL, len(want))
	if got := bodiesOf(moved); !slices.Equal(got, want) {
		t.Errorf("the source queue received %d messages, want exactly the %d matching ones", len(got), len(want))
	}
	for _, m := range moved {
		if aws.ToString(m.MessageAttributes["kind"].StringValue) != "kind-1" || m.MessageAttributes["sig"].BinaryValue == nil {
			t.Fatalf("moved message %+v lost its attributes", m.MessageAttributes)
		}
	}
	if d := tooltest.Counts(t, server, q.URL); d != (sqsapi.Counts{}) {
		t.Errorf("the source queue holds %+v more: a message moved twice", d)
	}
	if d := tooltest.Counts(t, server, q.DLQURL); d.Visible != int64(n-len(want)) || d.InFlight != 0 {
		t.Errorf("the dead-letter queue holds %+v, want the %d others visible", d, n-len(want))
	}
}

// TestRedriveDryRunMovesNothing: a dry run prints the lines that would
// move, the lines drain writes, and moves and deletes nothing.
func TestRedriveDryRunMovesNothing(t *testing.T) {
	t.Parallel()
	const n = 60
	q := tooltest.CreateQueue(t, server, "redrive-dry", sqstest.QueueOptions{MaxReceiveCount: 3})
	tooltest.Load(t, server, q.DLQURL, false, tooltest.Lines(n, false))
	var out bytes.Buffer
	cfg := redriveCfg(t, q.DLQURL)
	cfg.Filter = `select(.message_attributes.kind.string_value != "kind-0")`
	cfg.DryRun, cfg.DryRunOut = true, &out
	report, err := redrive.Run(t.Context(), cfg, server.Client(), tooltest.Log(t))
	if err != nil {
		t.Fatal(err)
	}
	r := line.NewReader(&out)
	printed := 0
	for {
		l, _, err := r.Next()
		if err != nil {
			break
		}
		printed++
		if kindOf(l) == "kind-0" || l.QueueURL != q.DLQURL || l.MessageID == "" {
			t.Errorf("dry run printed %+v, want only the lines that would move, as drain writes them", l)
		}
	}
	want := n - (n+2)/3
	if printed != want || report.Matched != want || report.ByTarget[q.Name] != want || report.Moved != 0 || report.Deleted != 0 {
		t.Errorf("dry run printed %d lines, report %+v; want %d that would move to %s, none moved", printed, report, want, q.Name)
	}
	if d := tooltest.Counts(t, server, q.DLQURL); d.Visible != n || d.InFlight != 0 {
		t.Errorf("after a dry run the dead-letter queue holds %+v, want all %d visible", d, n)
	}
	if d := tooltest.Counts(t, server, q.URL); d != (sqsapi.Counts{}) {
		t.Errorf("after a dry run the source queue holds %+v, want nothing", d)
	}
}

// sourceArnAPI adds the DeadLetterQueueSourceArn attribute SQS sets on a
// message it moved to a dead-letter queue, which the local server does
// not set: arnOf names it from the message's body.
type sourceArnAPI struct {
	redrive.API
	arnOf func(body string) string
}

func (s *sourceArnAPI) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := s.API.ReceiveMessage(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	for i := range out.Messages {
		m := &out.Messages[i]
		if m.Attributes == nil {
			m.Attributes = map[string]string{}
		}
		m.Attributes[redrive.AttrDeadLetterQueueSourceArn] = s.arnOf(aws.ToString(m.Body))
	}
	return out, nil
}

// feeding creates a queue whose redrive policy names the dead-letter
// queue dlqARN.
func feeding(t *testing.T, prefix, dlqARN string) sqstest.Queue {
	t.Helper()
	name := tooltest.UniqueName(prefix)
	out, err := server.Client().CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":3}`, dlqARN),
	}})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(out.QueueUrl)
	arn, err := server.QueueARN(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	return sqstest.Queue{Name: name, URL: url, ARN: arn}
}

// TestRedriveSendsEachMessageBackToItsOwnSource: a dead-letter queue fed
// by two queues sends each message to the queue its
// DeadLetterQueueSourceArn names; without that attribute there is no way
// to tell, and the redrive refuses, naming both, moving nothing.
func TestRedriveSendsEachMessageBackToItsOwnSource(t *testing.T) {
	t.Parallel()
	dlq := tooltest.CreateQueue(t, server, "redrive-two-dlq", sqstest.QueueOptions{})
	a, b := feeding(t, "redrive-two-a", dlq.ARN), feeding(t, "redrive-two-b", dlq.ARN)
	var bodies []string
	for i := range 40 {
		bodies = append(bodies, fmt.Sprintf("%s-%02d", []string{"a", "b"}[i%2], i))
	}
	if err := server.SendBodies(t.Context(), dlq.URL, bodies, nil); err != nil {
		t.Fatal(err)
	}

	_, err := redrive.Run(t.Context(), redriveCfg(t, dlq.URL), server.Client(), tooltest.Log(t))
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "To" || !strings.Contains(err.Error(), a.Name) || !strings.Contains(err.Error(), b.Name) {
		t.Fatalf("redrive of a dead-letter queue of two queues, no source attribute: %v; want a refusal naming To and both queues", err)
	}
	if d := tooltest.Counts(t, server, dlq.URL); d.Visible != int64(len(bodies)) || d.InFlight != 0 {
		t.Fatalf("after the refusal the dead-letter queue holds %+v, want all %d visible", d, len(bodies))
	}

	api := &sourceArnAPI{API: server.Client(), arnOf: func(body string) string {
		if strings.HasPrefix(body, "a-") {
			return a.ARN
		}
		return b.ARN
	}}
	report, err := redrive.Run(t.Context(), redriveCfg(t, dlq.URL), api, tooltest.Log(t))
	if err != nil {
		t.Fatal(err)
	}
	if report.ByTarget[a.Name] != 20 || report.ByTarget[b.Name] != 20 || report.Deleted != 40 {
		t.Errorf("report %+v, want 20 moved to each source", report)
	}
	for _, q := range []sqstest.Queue{a, b} {
		prefix := q.Name[len("redrive-two-") : len("redrive-two-")+1]
		for _, body := range bodiesOf(tooltest.Collect(t, server, q.URL, 20)) {
			if !strings.HasPrefix(body, prefix+"-") {
				t.Errorf("%s received %q, which came from the other queue", q.Name, body)
			}
		}
	}
	if d := tooltest.Counts(t, server, dlq.URL); d != (sqsapi.Counts{}) {
		t.Errorf("the dead-letter queue holds %+v, want nothing", d)
	}
}

// sameDedupAPI shows every FIFO message with one deduplication id, as a
// dead-letter queue shows two messages with one body sent to a queue
// with content-based deduplication more than five minutes apart.
type sameDedupAPI struct {
	redrive.API
	mu    sync.Mutex
	sends []types.SendMessageBatchRequestEntry
}

func (s *sameDedupAPI) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := s.API.ReceiveMessage(ctx, in, opts...)
	if err == nil {
		for _, m := range out.Messages {
			m.Attributes[line.AttrMessageDeduplicationID] = line.MD5(aws.ToString(m.Body))
		}
	}
	return out, err
}

func (s *sameDedupAPI) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	s.mu.Lock()
	s.sends = append(s.sends, in.Entries...)
	s.mu.Unlock()
	return s.API.SendMessageBatch(ctx, in, opts...)
}

// TestRedriveIntoFIFOKeepsIdenticalBodies: into a FIFO queue with
// content-based deduplication, two messages with the same body both
// arrive, each send carrying its message's own deduplication id and its
// group.
func TestRedriveIntoFIFOKeepsIdenticalBodies(t *testing.T) {
	t.Parallel()
	dlq := tooltest.CreateQueue(t, server, "redrive-fifo-dlq", sqstest.QueueOptions{FIFO: true})
	out, err := server.Client().CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(tooltest.UniqueName("redrive-fifo") + ".fifo"),
		Attributes: map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	target := aws.ToString(out.QueueUrl)
	if _, err := server.Client().SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(dlq.URL), Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("1"), MessageBody: aws.String(`{"order":7}`), MessageGroupId: aws.String("customer-1"), MessageDeduplicationId: aws.String("first")},
		{Id: aws.String("2"), MessageBody: aws.String(`{"order":7}`), MessageGroupId: aws.String("customer-1"), MessageDeduplicationId: aws.String("second")},
	}}); err != nil {
		t.Fatal(err)
	}
	api := &sameDedupAPI{API: server.Client()}
	cfg := redriveCfg(t, dlq.URL)
	to := describe(t, target)
	cfg.To = &to
	report, err := redrive.Run(t.Context(), cfg, api, tooltest.Log(t))
	if err != nil || report.Moved != 2 || report.Deleted != 2 {
		t.Fatalf("redrive: %v; report %+v, want 2 moved", err, report)
	}
	got := tooltest.Collect(t, server, target, 2)
	if bodies := bodiesOf(got); !slices.Equal(bodies, []string{`{"order":7}`, `{"order":7}`}) {
		t.Errorf("the FIFO queue received %q, want both copies", bodies)
	}
	ids := map[string]bool{}
	for _, e := range api.sends {
		ids[aws.ToString(e.MessageDeduplicationId)] = true
		if aws.ToString(e.MessageGroupId) != "customer-1" {
			t.Errorf("send entry with group %q, want customer-1 kept", aws.ToString(e.MessageGroupId))
		}
	}
	if len(ids) != 2 || ids[""] {
		t.Errorf("sends carried deduplication ids %v, want two distinct ones", ids)
	}
}

// TestRedriveLeavesWhatTheTargetRefuses: a message the target refuses (a
// FIFO queue needs a group id) stays in the dead-letter queue, visible,
// and is reported.
func TestRedriveLeavesWhatTheTargetRefuses(t *testing.T) {
	t.Parallel()
	dlq := tooltest.CreateQueue(t, server, "redrive-refused-dlq", sqstest.QueueOptions{})
	target := tooltest.CreateQueue(t, server, "redrive-refused", sqstest.QueueOptions{FIFO: true})
	if err := server.SendBodies(t.Context(), dlq.URL, tooltest.Bodies("no-group", 12), nil); err != nil {
		t.Fatal(err)
	}
	cfg := redriveCfg(t, dlq.URL)
	to := describe(t, target.URL)
	cfg.To = &to
	var problems []redrive.Problem
	cfg.OnProblem = func(p redrive.Problem) { problems = append(problems, p) }
	report, err := redrive.Run(t.Context(), cfg, server.Client(), tooltest.Log(t))
	if err != nil {
		t.Fatal(err)
	}
	if report.Refused != 12 || report.Moved != 0 || len(problems) != 12 || !strings.Contains(problems[0].Reason, "MessageGroupId") {
		t.Errorf("report %+v, problems %+v; want 12 refused, each reported with the reason", report, problems)
	}
	if d := tooltest.Counts(t, server, dlq.URL); d.Visible != 12 || d.InFlight != 0 {
		t.Errorf("the dead-letter queue holds %+v, want all 12 visible", d)
	}
}

// arrivingAPI sends one more message into the dead-letter queue during
// the run's first send, as a consumer failing on new messages does.
type arrivingAPI struct {
	redrive.API
	dlqURL string
	once   sync.Once
	err    error
}

func (a *arrivingAPI) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out, err := a.API.SendMessageBatch(ctx, in, opts...)
	a.once.Do(func() {
		a.err = server.SendBodies(ctx, a.dlqURL, []string{"arrived-during-the-run"}, nil)
	})
	return out, err
}

// TestRedriveReadsWhatTheQueueHeldAtTheStart: a message that arrives in
// the dead-letter queue during the run does not keep it going: the run
// reads as many messages as the queue held when it started, moves them,
// and leaves the rest there, visible, saying so.
func TestRedriveReadsWhatTheQueueHeldAtTheStart(t *testing.T) {
	t.Parallel()
	const n = 25
	q := tooltest.CreateQueue(t, server, "redrive-at-start", sqstest.QueueOptions{MaxReceiveCount: 3})
	if err := server.SendBodies(t.Context(), q.DLQURL, tooltest.Bodies("at-start", n), nil); err != nil {
		t.Fatal(err)
	}
	api := &arrivingAPI{API: server.Client(), dlqURL: q.DLQURL}
	report, err := redrive.Run(t.Context(), redriveCfg(t, q.DLQURL), api, tooltest.Log(t))
	if err != nil || api.err != nil {
		t.Fatalf("redrive: %v; the message arriving during it: %v", err, api.err)
	}
	left := int(report.Left.Visible + report.Left.InFlight + report.Left.Delayed)
	if report.AtStart != n || report.Read != n || report.Moved != n || report.Deleted != n || !report.AllRead || left-report.Stays() != 1 {
		t.Errorf("report %+v; want the %d messages held at the start read and moved, and 1 more left", report, n)
	}
	if d := tooltest.Counts(t, server, q.DLQURL); d.Visible != 1 || d.InFlight != 0 {
		t.Errorf("the dead-letter queue holds %+v, want the 1 message that arrived during the run, visible", d)
	}
	if got := len(tooltest.Collect(t, server, q.URL, n)); got != n {
		t.Errorf("the source queue received %d messages, want %d", got, n)
	}
}
