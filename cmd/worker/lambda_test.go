package main

import (
	"crypto/md5" //nolint:gosec // the checksum SQS and Lambda send
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/lambdatest"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// startEmulator runs the Lambda runtime interface emulator with the test
// function, recording its events in a directory of the test.
func startEmulator(t *testing.T, o lambdatest.Options) *lambdatest.Emulator {
	t.Helper()
	e, err := lambdatest.Start(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Kill()
		if t.Failed() {
			t.Logf("emulator log (last 30 lines):\n%s", e.LastLines(30))
		}
	})
	return e
}

// lambdaWorker runs the worker with the lambda handler against e: one
// invocation at a time (the emulator runs one), batches of up to 10.
func lambdaWorker(t *testing.T, q sqstest.Queue, e *lambdatest.Emulator, extra ...string) proc {
	t.Helper()
	args := []string{"--queue-url", q.URL, "--wait-time", "1s", "--handler", "lambda",
		"--lambda-function", lambdatest.FunctionName, "--lambda-endpoint-url", e.EndpointURL,
		"--concurrency", "1", "--batch-size", "10", "--batch-window", "200ms",
		"--retry-backoff-min", "100ms", "--retry-backoff-max", "200ms"}
	return startWorker(t, append(args, extra...)...)
}

// seen reads how many times the function was given each body.
func seen(t *testing.T, dir string) map[string]int {
	t.Helper()
	s, err := lambdatest.Seen(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLambdaHandlerAgainstTheEmulator runs the worker's lambda handler
// against the Lambda runtime interface emulator running a function
// written with aws-lambda-go, in each way a batch can end. Every message
// is counted: none lost, none handled again but those a failure retried.
func TestLambdaHandlerAgainstTheEmulator(t *testing.T) {
	t.Parallel()
	const maxReceives = 3
	tests := []struct {
		name string
		// scripted are the bodies that make the function misbehave;
		// failing, those that never succeed (dead-lettered).
		scripted []string
		failing  bool
		timeout  int
	}{
		{name: "all succeed"},
		{name: "partial failures", scripted: []string{"fail:1", "fail:2", "fail:3"}, failing: true},
		{name: "function error", scripted: []string{"error-once:1"}},
		{name: "function panic", scripted: []string{"panic-once:1"}},
		{name: "malformed response", scripted: []string{"malformed-once:1"}},
		{name: "unknown item identifier", scripted: []string{"unknown-id-once:1"}},
		{name: "runtime crash", scripted: []string{"exit-once:1"}},
		{name: "function timeout", scripted: []string{"sleep-once:1"}, timeout: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q, err := server.CreateQueue(t.Context(), "lambda", sqstest.QueueOptions{MaxReceiveCount: maxReceives})
			if err != nil {
				t.Fatal(err)
			}
			ok := bodies("ok", 25)
			if err := server.SendBodies(t.Context(), q.URL, append(append([]string{}, ok...), tt.scripted...), nil); err != nil {
				t.Fatal(err)
			}
			e := startEmulator(t, lambdatest.Options{Timeout: tt.timeout})
			w := lambdaWorker(t, q, e)
			n := len(ok) + len(tt.scripted)
			dead := 0
			if tt.failing {
				dead = len(tt.scripted)
			}
			testkit.Eventually(t, 2*time.Minute, "every message deleted or dead-lettered", func() bool {
				d := depth(t, q.URL)
				return d.Visible+d.InFlight == 0 && depth(t, q.DLQURL).Visible == dead &&
					w.scrape().Value("sqsworker_messages_deleted_total") == float64(n-dead)
			})
			w.stop(syscall.SIGTERM, time.Minute)

			s := seen(t, e.RecordDir)
			evs, err := lambdatest.Events(e.RecordDir)
			if err != nil {
				t.Fatal(err)
			}
			retried := 0
			for _, b := range ok {
				switch c := s[b]; {
				case c == 0:
					t.Errorf("message %s lost: the function never saw it", b)
				case c > 1 && len(tt.scripted) == 0:
					t.Errorf("message %s seen %d times, want once", b, c)
				case c > 2:
					t.Errorf("message %s seen %d times, want once, or twice when its batch was retried", b, c)
				case c == 2:
					retried++
				}
			}
			for _, b := range tt.scripted {
				want := 2
				if tt.failing {
					want = maxReceives
				}
				if s[b] != want {
					t.Errorf("scripted message %s seen %d times, want %d", b, s[b], want)
				}
			}
			if tt.failing && retried > 0 {
				t.Errorf("%d succeeded messages were retried: only the listed failures must be", retried)
			}
			t.Logf("figures: messages=%d invocations=%d retried_with_their_batch=%d dead_lettered=%d", n, len(evs), retried, dead)
			if len(evs) >= n {
				t.Errorf("%d invocations for %d messages: no batches were formed", len(evs), n)
			}
		})
	}
}

// TestLambdaEventCarriesEveryRecordField: what the function reads
// (aws-lambda-go's events.SQSEvent) has every field Lambda sets, from the
// message the worker received.
func TestLambdaEventCarriesEveryRecordField(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "lambda-fields", sqstest.QueueOptions{FIFO: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = server.Client().SendMessage(t.Context(), &sqs.SendMessageInput{
		QueueUrl: aws.String(q.URL), MessageBody: aws.String("ok-fields"),
		MessageGroupId: aws.String("g1"), MessageDeduplicationId: aws.String("d1"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"tenant": {DataType: aws.String("String"), StringValue: aws.String("acme")},
			"blob":   {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := startEmulator(t, lambdatest.Options{})
	w := lambdaWorker(t, q, e)
	testkit.Eventually(t, time.Minute, "the message deleted", func() bool {
		return w.scrape().Value("sqsworker_messages_deleted_total") == 1
	})
	w.stop(syscall.SIGTERM, time.Minute)
	evs, err := lambdatest.Events(e.RecordDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || len(evs[0].Records) != 1 {
		t.Fatalf("events %+v, want one of one record", evs)
	}
	r := evs[0].Records[0]
	sum := md5.Sum([]byte("ok-fields")) //nolint:gosec // see the import
	if r.MessageId == "" || r.ReceiptHandle == "" || r.Body != "ok-fields" || r.Md5OfBody != hex.EncodeToString(sum[:]) ||
		r.EventSource != "aws:sqs" || r.EventSourceARN != q.ARN || r.AWSRegion != sqstest.Region {
		t.Errorf("record %+v: want id, receipt handle, body, its MD5, aws:sqs, ARN %s, region %s", r, q.ARN, sqstest.Region)
	}
	for _, a := range []string{"MessageGroupId", "MessageDeduplicationId", "SequenceNumber", "ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"} {
		if r.Attributes[a] == "" {
			t.Errorf("attribute %s missing: %v", a, r.Attributes)
		}
	}
	if r.Attributes["MessageGroupId"] != "g1" {
		t.Errorf("MessageGroupId %q, want g1", r.Attributes["MessageGroupId"])
	}
	if a := r.MessageAttributes["tenant"]; a.DataType != "String" || aws.ToString(a.StringValue) != "acme" {
		t.Errorf("tenant attribute %+v", a)
	}
	if a := r.MessageAttributes["blob"]; a.DataType != "Binary" || string(a.BinaryValue) != "\x00\x01\x02" {
		t.Errorf("blob attribute %+v", a)
	}
}

// TestLambdaFIFOFailureMidGroup: on a FIFO queue, a message that keeps
// failing holds back the rest of its group until it is dead-lettered;
// the other group goes on; each group is handled in order.
func TestLambdaFIFOFailureMidGroup(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "lambda-fifo", sqstest.QueueOptions{FIFO: true, MaxReceiveCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	groupA := []string{"ok-a1", "fail:a2", "ok-a3", "ok-a4"}
	groupB := []string{"ok-b1", "ok-b2", "ok-b3", "ok-b4"}
	all := append(append([]string{}, groupA...), groupB...)
	if err := server.SendBodies(t.Context(), q.URL, all, func(i int) string { return map[bool]string{true: "A", false: "B"}[i < len(groupA)] }); err != nil {
		t.Fatal(err)
	}
	e := startEmulator(t, lambdatest.Options{})
	w := lambdaWorker(t, q, e)
	testkit.Eventually(t, 2*time.Minute, "the failing message dead-lettered, the rest deleted", func() bool {
		d := depth(t, q.URL)
		return d.Visible+d.InFlight == 0 && depth(t, q.DLQURL).Visible == 1 &&
			w.scrape().Value("sqsworker_messages_deleted_total") == float64(len(all)-1)
	})
	w.stop(syscall.SIGTERM, time.Minute)
	evs, err := lambdatest.Events(e.RecordDir)
	if err != nil {
		t.Fatal(err)
	}
	// Each group's bodies, in the order the function first saw them.
	order := map[string][]string{}
	count := map[string]int{}
	for _, ev := range evs {
		for _, r := range ev.Records {
			count[r.Body]++
			if count[r.Body] == 1 {
				g := r.Attributes["MessageGroupId"]
				order[g] = append(order[g], r.Body)
			}
		}
	}
	if got := strings.Join(order["A"], ","); got != strings.Join(groupA, ",") {
		t.Errorf("group A first seen in order %s, want %s", got, strings.Join(groupA, ","))
	}
	if got := strings.Join(order["B"], ","); got != strings.Join(groupB, ",") {
		t.Errorf("group B first seen in order %s, want %s", got, strings.Join(groupB, ","))
	}
	for _, b := range all {
		want := 1
		if b == "fail:a2" {
			want = 2
		}
		if count[b] != want {
			t.Errorf("%s seen %d times, want %d", b, count[b], want)
		}
	}
}

// TestLambdaBatchOutlivesTheVisibilityTimeout: a batch whose function
// runs for more than three visibility timeouts keeps every message's
// lease alive: nothing is handed out again, and the batch is deleted.
func TestLambdaBatchOutlivesTheVisibilityTimeout(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "lambda-long", sqstest.QueueOptions{VisibilityTimeout: 2, MaxReceiveCount: 5})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "release"), 0o600); err != nil {
		t.Fatal(err)
	}
	msgs := append(bodies("ok", 5), "block:"+dir)
	if err := server.SendBodies(t.Context(), q.URL, msgs, nil); err != nil {
		t.Fatal(err)
	}
	e := startEmulator(t, lambdatest.Options{})
	w := lambdaWorker(t, q, e, "--visibility-timeout", "2s", "--batch-window", "1s")
	testkit.Eventually(t, time.Minute, "the function started", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	})
	// Three visibility timeouts of 2s pass while the function holds the
	// batch: at one extension per message per timeout at least, that is
	// 3 × 6 extensions.
	testkit.Eventually(t, time.Minute, "three visibility timeouts of extensions", func() bool {
		return w.scrape().Value("sqsworker_visibility_extensions_total") >= 18
	})
	if d := depth(t, q.URL); d.Visible != 0 {
		t.Errorf("%d messages visible again while their batch ran", d.Visible)
	}
	f, err := os.OpenFile(filepath.Join(dir, "release"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	testkit.Eventually(t, time.Minute, "every message deleted", func() bool {
		return w.scrape().Value("sqsworker_messages_deleted_total") == float64(len(msgs))
	})
	w.stop(syscall.SIGTERM, time.Minute)
	for b, c := range seen(t, e.RecordDir) {
		if c != 1 {
			t.Errorf("%s seen %d times, want once", b, c)
		}
	}
}

// TestHTTPBatchSize: with --http-batch-size the http handler POSTs Lambda's
// SQS event and reads batchItemFailures as Lambda does: only the listed
// messages are retried, then dead-lettered.
func TestHTTPBatchSize(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "http-batch", sqstest.QueueOptions{MaxReceiveCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	ok := bodies("ok", 30)
	failing := []string{"fail:1", "fail:2"}
	if err := server.SendBodies(t.Context(), q.URL, append(append([]string{}, ok...), failing...), nil); err != nil {
		t.Fatal(err)
	}
	counts := make(chan map[string]int, 1)
	counts <- map[string]int{}
	batches := make(chan int, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev events.SQSEvent
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var resp events.SQSEventResponse
		c := <-counts
		for _, rec := range ev.Records {
			c[rec.Body]++
			if strings.HasPrefix(rec.Body, "fail:") {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
			}
		}
		counts <- c
		batches <- len(ev.Records)
		_ = json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	w := startWorker(t, "--queue-url", q.URL, "--wait-time", "1s", "--http-url", srv.URL, "--http-batch-size", "10",
		"--batch-window", "200ms", "--concurrency", "2", "--retry-backoff-min", "100ms", "--retry-backoff-max", "200ms")
	testkit.Eventually(t, 2*time.Minute, "the good messages deleted, the failing ones dead-lettered", func() bool {
		d := depth(t, q.URL)
		return d.Visible+d.InFlight == 0 && depth(t, q.DLQURL).Visible == len(failing) &&
			w.scrape().Value("sqsworker_messages_deleted_total") == float64(len(ok))
	})
	w.stop(syscall.SIGTERM, time.Minute)
	c := <-counts
	for _, b := range ok {
		if c[b] != 1 {
			t.Errorf("%s seen %d times, want once", b, c[b])
		}
	}
	for _, b := range failing {
		if c[b] != 2 {
			t.Errorf("%s seen %d times, want 2 (the queue's maxReceiveCount)", b, c[b])
		}
	}
	close(batches)
	largest := 0
	for n := range batches {
		largest = max(largest, n)
	}
	t.Logf("figures: largest_batch=%d", largest)
	if largest < 2 {
		t.Errorf("largest batch %d: no batches were formed", largest)
	}
}
