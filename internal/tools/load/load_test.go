package load_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/load"
	"github.com/sqsworker/sqsworker/internal/tools/tooltest"
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

func TestLoadKeepsBodiesAttributesAndIDs(t *testing.T) {
	t.Parallel()
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			t.Parallel()
			const n = 237
			q := tooltest.CreateQueue(t, server, "load", sqstest.QueueOptions{FIFO: fifo})
			lines := tooltest.Lines(n, fifo)
			api := &recordingAPI{API: server.Client()}
			var problems []load.Problem
			report, err := load.Run(t.Context(), load.Config{QueueURL: q.URL, FIFO: fifo, Rate: 5000,
				OnProblem: func(p load.Problem) { problems = append(problems, p) }}, api, tooltest.File(t, lines))
			if err != nil || !report.OK() || len(problems) > 0 {
				t.Fatalf("load: %v; report %+v; problems %+v", err, report, problems)
			}
			if report.Lines != n || report.Sent != n {
				t.Errorf("report %+v, want %d lines sent", report, n)
			}

			want := map[string]tooltest.Sent{}
			for _, l := range lines {
				want[l.Body] = tooltest.KeptOf(l)
			}
			got := map[string]tooltest.Sent{}
			groupOrder := map[string][]string{}
			for _, m := range tooltest.ReceiveAll(t, server, q.URL, n) {
				s := tooltest.Received(m)
				got[s.Body] = s
				groupOrder[s.Group] = append(groupOrder[s.Group], s.Dedup)
			}
			if !fifo {
				for k, s := range want {
					s.Group = got[k].Group // a standard queue need not return MessageGroupId
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
	q := tooltest.CreateQueue(t, server, "load-big", sqstest.QueueOptions{})
	var lines []line.Line
	for i := range 7 {
		lines = append(lines, line.Line{Body: fmt.Sprintf("%d:%s", i, strings.Repeat("x", 400<<10))})
	}
	lines = append(lines, line.Line{Body: strings.Repeat("y", line.MaxMessageSize)})
	api := &recordingAPI{API: server.Client()}
	report, err := load.Run(t.Context(), load.Config{QueueURL: q.URL}, api, tooltest.File(t, lines))
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
	tooltest.ReceiveAll(t, server, q.URL, len(lines))
}

func TestLoadReportsEachLineNotSent(t *testing.T) {
	t.Parallel()
	q := tooltest.CreateQueue(t, server, "load-bad", sqstest.QueueOptions{FIFO: true})
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
	tooltest.ReceiveAll(t, server, q.URL, 2)
}

func TestLoadRetriesThrottlingAndStopsWhenTheQueueIsGone(t *testing.T) {
	t.Parallel()
	q := tooltest.CreateQueue(t, server, "load-retry", sqstest.QueueOptions{})
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down", Fault: smithy.FaultClient}
	api := &recordingAPI{API: server.Client(), fail: func(call int) error {
		if call <= 2 {
			return throttled
		}
		return nil
	}}
	lines := tooltest.Lines(25, false)
	report, err := load.Run(t.Context(), load.Config{QueueURL: q.URL, Senders: 1}, api, tooltest.File(t, lines))
	if err != nil || !report.OK() {
		t.Fatalf("after two throttled calls: %v; report %+v", err, report)
	}
	tooltest.ReceiveAll(t, server, q.URL, 25)

	missing := q.URL + "-missing"
	var problems []load.Problem
	report, err = load.Run(t.Context(), load.Config{QueueURL: missing,
		OnProblem: func(p load.Problem) { problems = append(problems, p) }}, server.Client(), tooltest.File(t, lines))
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
