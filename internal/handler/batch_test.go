package handler

import (
	"context"
	"crypto/md5" //nolint:gosec // the checksum SQS and Lambda send
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/message"
)

func batchMessage(id, group string) *message.Message {
	return &message.Message{
		ID: id, ReceiptHandle: "rh-" + id, Body: "body of " + id, GroupID: group,
		QueueURL:         "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo",
		SystemAttributes: map[string]string{"ApproximateReceiveCount": "1", "MessageGroupId": group, "SequenceNumber": "1"},
		Attributes: map[string]types.MessageAttributeValue{
			"s": {DataType: aws.String("String"), StringValue: aws.String("v")},
			"b": {DataType: aws.String("Binary"), BinaryValue: []byte{0xff, 0}},
			"n": {DataType: aws.String("Number.int"), StringValue: aws.String("7")},
		},
	}
}

// TestEventIsByteCompatibleWithEventsSQSEvent: the event the batch handlers
// send is exactly what json.Marshal(events.SQSEvent) writes, and decodes
// into it with every field.
func TestEventIsByteCompatibleWithEventsSQSEvent(t *testing.T) {
	t.Parallel()
	msgs := []*message.Message{batchMessage("m1", "g"), batchMessage("m2", "g")}
	var want events.SQSEvent
	for _, m := range msgs {
		want.Records = append(want.Records, Record(m, "us-east-1"))
	}
	var got []byte
	b, err := NewBatcher(BatchConfig{Size: len(msgs)}, invokerFunc(func(_ context.Context, event []byte) ([]byte, error) {
		got = event
		return nil, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range b.HandleBatch(context.Background(), msgs) {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	wantJSON, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(wantJSON) {
		t.Fatalf("event\n%s\nwant json.Marshal(events.SQSEvent)\n%s", got, wantJSON)
	}
	var ev events.SQSEvent
	if err := json.Unmarshal(got, &ev); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(ev)
	if string(again) != string(got) {
		t.Errorf("decoded and encoded again:\n%s\nwant\n%s", again, got)
	}
	r := ev.Records[0]
	if r.EventSource != "aws:sqs" || r.AWSRegion != "eu-west-1" || r.EventSourceARN != "arn:aws:sqs:eu-west-1:123456789012:orders.fifo" ||
		r.Md5OfBody != md5Hex("body of m1") || r.ReceiptHandle != "rh-m1" || r.Attributes["MessageGroupId"] != "g" {
		t.Errorf("record %+v", r)
	}
	if a := r.MessageAttributes["b"]; a.DataType != "Binary" || string(a.BinaryValue) != "\xff\x00" || a.StringListValues == nil || a.BinaryListValues == nil {
		t.Errorf("binary attribute %+v: want its value and empty (not null) lists, as Lambda sends", a)
	}
	if !strings.Contains(string(got), `"stringListValues":[],"binaryListValues":[]`) {
		t.Errorf("lists not sent as []: %s", got)
	}
}

func TestParseBatchResponse(t *testing.T) {
	t.Parallel()
	ids := map[string]bool{"a": true, "b": true}
	tests := []struct {
		name, payload string
		failed        []string
		wholeBatch    bool
		functionError bool
	}{
		{name: "empty", payload: ""},
		{name: "null", payload: "null"},
		{name: "empty object", payload: "{}"},
		{name: "null list", payload: `{"batchItemFailures":null}`},
		{name: "empty list", payload: `{"batchItemFailures":[]}`},
		{name: "not an object", payload: `"done"`},
		{name: "one failed", payload: `{"batchItemFailures":[{"itemIdentifier":"b"}]}`, failed: []string{"b"}},
		{name: "both failed", payload: `{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"b"}]}`, failed: []string{"a", "b"}},
		{name: "invalid JSON", payload: `{"batchItemFailures": [`, wholeBatch: true},
		{name: "timeout text", payload: `Task timed out after 1.00 seconds`, wholeBatch: true},
		{name: "empty identifier", payload: `{"batchItemFailures":[{"itemIdentifier":""}]}`, wholeBatch: true},
		{name: "null identifier", payload: `{"batchItemFailures":[{"itemIdentifier":null}]}`, wholeBatch: true},
		{name: "misspelt key", payload: `{"batchItemFailures":[{"itemIdentifer":"a"}]}`, wholeBatch: true},
		{name: "unknown identifier", payload: `{"batchItemFailures":[{"itemIdentifier":"zz"}]}`, wholeBatch: true},
		{name: "number identifier", payload: `{"batchItemFailures":[{"itemIdentifier":1}]}`, wholeBatch: true},
		{name: "runtime error object", payload: `{"errorMessage":"boom","errorType":"errorString"}`, wholeBatch: true, functionError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			failed, err := ParseBatchResponse([]byte(tt.payload), ids)
			if (err != nil) != tt.wholeBatch {
				t.Fatalf("err %v, want whole batch failed: %v", err, tt.wholeBatch)
			}
			var fe *FunctionError
			if errors.As(err, &fe) != tt.functionError {
				t.Errorf("err %v: function error %v, want %v", err, !tt.functionError, tt.functionError)
			}
			if len(failed) != len(tt.failed) {
				t.Errorf("failed %v, want %v", failed, tt.failed)
			}
			for _, id := range tt.failed {
				if !failed[id] {
					t.Errorf("failed %v, want %v", failed, tt.failed)
				}
			}
		})
	}
}

// invokerFunc is an Invoker made of a function.
type invokerFunc func(ctx context.Context, event []byte) ([]byte, error)

func (f invokerFunc) Invoke(ctx context.Context, event []byte) ([]byte, error) { return f(ctx, event) }

// TestBatcherFIFOFailsTheRestOfAGroup: in a FIFO batch, after a failed
// message the later messages of its group fail too; other groups do not.
func TestBatcherFIFOFailsTheRestOfAGroup(t *testing.T) {
	t.Parallel()
	msgs := []*message.Message{batchMessage("a1", "A"), batchMessage("b1", "B"), batchMessage("a2", "A"), batchMessage("b2", "B"), batchMessage("a3", "A")}
	b, err := NewBatcher(BatchConfig{Size: len(msgs), FIFO: true}, invokerFunc(func(context.Context, []byte) ([]byte, error) {
		return []byte(`{"batchItemFailures":[{"itemIdentifier":"a2"}]}`), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	errs := b.HandleBatch(context.Background(), msgs)
	want := map[string]bool{"a1": false, "b1": false, "a2": true, "b2": false, "a3": true}
	for i, m := range msgs {
		if (errs[i] != nil) != want[m.ID] {
			t.Errorf("%s: err %v, want failed %v", m.ID, errs[i], want[m.ID])
		}
	}
	if !errors.Is(errs[4], ErrGroupFailed) {
		t.Errorf("a3: %v, want ErrGroupFailed", errs[4])
	}
}

// TestBatcherSplitsByPayload: a batch whose event would exceed
// MaxPayload is sent as several events, in order, each within it, and
// every message gets the result of its own.
func TestBatcherSplitsByPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		max   int
		sizes []int
	}{
		{name: "fits", max: 0, sizes: []int{8}},
		{name: "each alone", max: 1500, sizes: []int{1, 1, 1, 1, 1, 1, 1, 1}},
		{name: "two a time", max: 2600, sizes: []int{2, 2, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var sizes []int
			var order []string
			inv := invokerFunc(func(_ context.Context, event []byte) ([]byte, error) {
				var ev events.SQSEvent
				if err := json.Unmarshal(event, &ev); err != nil {
					return nil, err
				}
				if tt.max > 0 && len(event) > tt.max {
					t.Errorf("event of %d bytes, over %d", len(event), tt.max)
				}
				sizes = append(sizes, len(ev.Records))
				for _, r := range ev.Records {
					order = append(order, r.MessageId)
				}
				// The last of each event failed.
				return []byte(`{"batchItemFailures":[{"itemIdentifier":"` + ev.Records[len(ev.Records)-1].MessageId + `"}]}`), nil
			})
			b, err := NewBatcher(BatchConfig{Size: 8, MaxPayload: tt.max}, inv)
			if err != nil {
				t.Fatal(err)
			}
			msgs := make([]*message.Message, 8)
			var ids []string
			for i := range msgs {
				msgs[i] = batchMessage("m"+strconv.Itoa(i), "")
				msgs[i].Body = strings.Repeat("x", 600)
				ids = append(ids, msgs[i].ID)
			}
			errs := b.HandleBatch(context.Background(), msgs)
			if fmt.Sprint(sizes) != fmt.Sprint(tt.sizes) {
				t.Errorf("events of %v records, want %v", sizes, tt.sizes)
			}
			if fmt.Sprint(order) != fmt.Sprint(ids) {
				t.Errorf("sent %v, want %v", order, ids)
			}
			end := 0
			for _, n := range sizes {
				end += n
				for i := end - n; i < end; i++ {
					if (errs[i] != nil) != (i == end-1) {
						t.Errorf("%s: %v; want failed only for the last of its event", msgs[i].ID, errs[i])
					}
				}
			}
		})
	}
}

// TestLambdaInvokeClassifiesAnswers: the SDK client's view of what a
// function endpoint answers (real Lambda's, or the emulator's).
func TestLambdaInvokeClassifiesAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		header      map[string]string
		body        string
		unavailable bool
		overloaded  bool
		funcErr     bool
		ok          bool
	}{
		{name: "success", status: 200, body: `{"batchItemFailures":[]}`, ok: true},
		{name: "function error header", status: 200, header: map[string]string{"X-Amz-Function-Error": "Unhandled"}, body: `{"errorMessage":"x","errorType":"MyError"}`, funcErr: true},
		{name: "emulator busy", status: 400, body: `{"errorType":"Runtime.Unavailable","errorMessage":"no ready runtime"}`, unavailable: true, overloaded: true},
		{name: "emulator busy, no body", status: 400, unavailable: true, overloaded: true},
		{name: "throttled", status: 429, header: map[string]string{"X-Amzn-ErrorType": "TooManyRequestsException"}, body: `{"message":"Rate exceeded"}`, unavailable: true, overloaded: true},
		{name: "runtime crashed", status: 502, body: `{"errorType":"Runtime.ExitError"}`, funcErr: true},
		{name: "service error", status: 500, header: map[string]string{"X-Amzn-ErrorType": "ServiceException"}, body: `{}`, unavailable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			l := &Lambda{function: "function", client: lambda.New(lambda.Options{
				Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1,
				Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
			})}
			_, err := l.Invoke(context.Background(), []byte(`{"Records":[]}`))
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want success %v", err, tt.ok)
			}
			unavailable, overloaded := IsUnavailable(err)
			var fe *FunctionError
			if unavailable != tt.unavailable || overloaded != tt.overloaded || errors.As(err, &fe) != tt.funcErr {
				t.Errorf("err %v: unavailable %v overloaded %v function error %v; want %v %v %v",
					err, unavailable, overloaded, fe != nil, tt.unavailable, tt.overloaded, tt.funcErr)
			}
			if tt.funcErr && tt.status == 200 && fe.Type != "MyError" {
				t.Errorf("function error type %q, want the payload's errorType MyError", fe.Type)
			}
		})
	}
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s)) //nolint:gosec // the checksum SQS and Lambda send
	return hex.EncodeToString(sum[:])
}
