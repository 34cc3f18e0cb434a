package tools_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/load"
)

// recordingAPI is the real client, recording every SendMessageBatch input;
// fail, when set, may answer a call instead of the server.
type recordingAPI struct {
	load.API
	mu    sync.Mutex
	calls []*sqs.SendMessageBatchInput
	fail  func(call int) error
}

func (r *recordingAPI) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	r.mu.Lock()
	r.calls = append(r.calls, in)
	n := len(r.calls)
	r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(n); err != nil {
			return nil, err
		}
	}
	return r.API.SendMessageBatch(ctx, in, opts...)
}

// testLines are n lines with string, number and binary attributes; on a
// FIFO queue each has a group (of five) and a deduplication id.
func testLines(n int, fifo bool) []line.Line {
	out := make([]line.Line, n)
	for i := range out {
		l := line.Line{
			MessageID: fmt.Sprintf("m-%d", i),
			Body:      fmt.Sprintf(`{"n":%d,"text":"<ü & ✓>"}`, i),
			Attributes: map[string]string{
				"SentTimestamp":  "1767225600000",
				"AWSTraceHeader": fmt.Sprintf("Root=1-5759e988-bd862e3fe1be46a9942727%02d;Sampled=1", i%100),
			},
			MessageAttributes: map[string]line.Attribute{
				"kind":  {DataType: "String", StringValue: fmt.Sprintf("kind-%d", i%3)},
				"total": {DataType: "Number", StringValue: fmt.Sprintf("%d.5", i)},
				"sig":   {DataType: "Binary", BinaryValue: []byte{byte(i), 0, 0xff}},
				"unit":  {DataType: "Number.float", StringValue: "1.25"},
			},
		}
		if fifo {
			l.Attributes["MessageGroupId"] = fmt.Sprintf("g-%d", i%5)
			l.Attributes["MessageDeduplicationId"] = fmt.Sprintf("d-%d", i)
		}
		out[i] = l
	}
	return out
}

func file(t *testing.T, lines []line.Line) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	w := line.NewWriter(&b)
	for i := range lines {
		if err := w.Write(&lines[i]); err != nil {
			t.Fatal(err)
		}
	}
	return &b
}

// sent is what a received message kept of its line.
type sent struct {
	body, group, dedup string
	attrs              map[string]line.Attribute
}

func keptOf(l line.Line) sent {
	return sent{body: l.Body, group: l.GroupID(), dedup: l.DeduplicationID(), attrs: l.MessageAttributes}
}

func received(m types.Message) sent {
	return keptOf(line.FromMessage(message.FromSQS("", m, time.Now())))
}

func TestLoadKeepsBodiesAttributesAndIDs(t *testing.T) {
	t.Parallel()
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			t.Parallel()
			const n = 237
			q := createQueue(t, "load", sqstest.QueueOptions{FIFO: fifo})
			lines := testLines(n, fifo)
			api := &recordingAPI{API: server.Client()}
			var problems []load.Problem
			report, err := load.Run(t.Context(), load.Config{QueueURL: q.URL, FIFO: fifo, Rate: 5000,
				OnProblem: func(p load.Problem) { problems = append(problems, p) }}, api, file(t, lines))
			if err != nil || !report.OK() || len(problems) > 0 {
				t.Fatalf("load: %v; report %+v; problems %+v", err, report, problems)
			}
			if report.Lines != n || report.Sent != n {
				t.Errorf("report %+v, want %d lines sent", report, n)
			}

			want := map[string]sent{}
			for _, l := range lines {
				want[l.Body] = keptOf(l)
			}
			got := map[string]sent{}
			groupOrder := map[string][]string{}
			for _, m := range receiveAll(t, q.URL, n) {
				s := received(m)
				got[s.body] = s
				groupOrder[s.group] = append(groupOrder[s.group], s.dedup)
			}
			if !fifo {
				for k, s := range want {
					s.group = got[k].group // a standard queue need not return MessageGroupId
					want[k] = s
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the queue holds %d messages that differ from the %d lines", len(got), len(want))
				for k := range want {
					if !reflect.DeepEqual(got[k], want[k]) {
						t.Errorf("first difference: got %+v, want %+v", got[k], want[k])
						break
					}
				}
			}
			if fifo {
				for g, ids := range groupOrder {
					if !slices.IsSortedFunc(ids, func(a, b string) int { return idNumber(a) - idNumber(b) }) {
						t.Errorf("group %s arrived out of file order: %v", g, ids)
					}
				}
			}

			traces := 0
			for _, in := range api.calls {
				if len(in.Entries) > 10 {
					t.Errorf("a batch of %d entries", len(in.Entries))
				}
				for _, e := range in.Entries {
					if aws.ToString(e.MessageSystemAttributes["AWSTraceHeader"].StringValue) != "" {
						traces++
					}
				}
			}
			if traces != n {
				t.Errorf("%d entries carried AWSTraceHeader, want %d", traces, n)
			}
		})
	}
}

func idNumber(dedup string) int {
	var n int
	_, _ = fmt.Sscanf(dedup, "d-%d", &n)
	return n
}

func TestLoadBatchesStayWithinOneMiB(t *testing.T) {
	t.Parallel()
	q := createQueue(t, "load-big", sqstest.QueueOptions{})
	var lines []line.Line
	for i := range 7 {
		lines = append(lines, line.Line{Body: fmt.Sprintf("%d:%s", i, strings.Repeat("x", 400<<10))})
	}
	lines = append(lines, line.Line{Body: strings.Repeat("y", line.MaxMessageSize)})
	api := &recordingAPI{API: server.Client()}
	report, err := load.Run(t.Context(), load.Config{QueueURL: q.URL}, api, file(t, lines))
	if err != nil || !report.OK() {
		t.Fatalf("load: %v; report %+v", err, report)
	}
	for _, in := range api.calls {
		size := 0
		for _, e := range in.Entries {
			size += len(aws.ToString(e.MessageBody))
		}
		if size > line.MaxMessageSize {
			t.Errorf("a batch of %d bytes", size)
		}
	}
	receiveAll(t, q.URL, len(lines))
}

func TestLoadReportsEachLineNotSent(t *testing.T) {
	t.Parallel()
	q := createQueue(t, "load-bad", sqstest.QueueOptions{FIFO: true})
	input := strings.Join([]string{
		`{"body":"one","attributes":{"MessageGroupId":"g","MessageDeduplicationId":"1"}}`,
		`{"body":"no group","attributes":{"MessageDeduplicationId":"2"}}`,
		`this is not json`,
		``,
		`{"body":""}`,
		`{"body":"two","attributes":{"MessageGroupId":"g","MessageDeduplicationId":"3"}}`,
	}, "\n")
	var problems []load.Problem
	report, err := load.Run(t.Context(), load.Config{QueueURL: q.URL, FIFO: true,
		OnProblem: func(p load.Problem) { problems = append(problems, p) }}, server.Client(), strings.NewReader(input))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	want := load.Report{Lines: 5, Sent: 2, Refused: 1, Skipped: 2, Complete: true, LastLine: 6}
	if report != want || report.OK() {
		t.Errorf("report %+v, want %+v", report, want)
	}
	slices.SortFunc(problems, func(a, b load.Problem) int { return a.Line - b.Line })
	wantLines := []struct {
		line       int
		kind, text string
	}{{2, load.Refused, "MessageGroupId"}, {3, load.Skipped, "not valid JSON"}, {5, load.Skipped, "body is empty"}}
	if len(problems) != len(wantLines) {
		t.Fatalf("problems %+v, want %d", problems, len(wantLines))
	}
	for i, w := range wantLines {
		if p := problems[i]; p.Line != w.line || p.Kind != w.kind || !strings.Contains(p.Reason, w.text) {
			t.Errorf("problem %+v, want line %d %s with %q", p, w.line, w.kind, w.text)
		}
	}
	receiveAll(t, q.URL, 2)
}

func TestLoadRetriesThrottlingAndStopsWhenTheQueueIsGone(t *testing.T) {
	t.Parallel()
	q := createQueue(t, "load-retry", sqstest.QueueOptions{})
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down", Fault: smithy.FaultClient}
	api := &recordingAPI{API: server.Client(), fail: func(call int) error {
		if call <= 2 {
			return throttled
		}
		return nil
	}}
	lines := testLines(25, false)
	report, err := load.Run(t.Context(), load.Config{QueueURL: q.URL, Senders: 1}, api, file(t, lines))
	if err != nil || !report.OK() {
		t.Fatalf("after two throttled calls: %v; report %+v", err, report)
	}
	receiveAll(t, q.URL, 25)

	missing := q.URL + "-missing"
	var problems []load.Problem
	report, err = load.Run(t.Context(), load.Config{QueueURL: missing,
		OnProblem: func(p load.Problem) { problems = append(problems, p) }}, server.Client(), file(t, lines))
	if err == nil || !strings.Contains(err.Error(), "QueueDoesNotExist") && !strings.Contains(err.Error(), "NonExistentQueue") {
		t.Fatalf("load to a missing queue: %v, want it to stop saying so", err)
	}
	if report.Sent != 0 || report.Unsent == 0 || report.Lines != report.Unsent || len(problems) != report.Unsent {
		t.Errorf("report %+v with %d problems: every line read should be counted and reported as not sent", report, len(problems))
	}
	if report.OK() {
		t.Errorf("report OK after a stop")
	}
}
