package line

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/message"
)

const queueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo"

func received() *message.Message {
	m := types.Message{
		MessageId: aws.String("5fea7756-0ea4-451a-a703-a558b933e274"),
		Body:      aws.String(`{"order":42,"note":"<b>&</b>"}`),
		Attributes: map[string]string{
			"SentTimestamp":                    "1767225600000",
			"ApproximateReceiveCount":          "1",
			"ApproximateFirstReceiveTimestamp": "1767225600250",
			"SenderId":                         "AIDAEXAMPLE",
			"SequenceNumber":                   "18849496460467696128",
			"MessageGroupId":                   "customer-7",
			"MessageDeduplicationId":           "order-42",
			"AWSTraceHeader":                   "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
		},
		MessageAttributes: map[string]types.MessageAttributeValue{
			"kind":  {DataType: aws.String("String"), StringValue: aws.String("created")},
			"total": {DataType: aws.String("Number"), StringValue: aws.String("99.5")},
			"sig":   {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2, 0xff}},
		},
	}
	return message.FromSQS(queueURL, m, time.Now())
}

// exampleLine is the line README shows; the test keeps the two in step.
const exampleLine = `{"message_id":"5fea7756-0ea4-451a-a703-a558b933e274","body":"{\"order\":42,\"note\":\"<b>&</b>\"}","md5_of_body":"3d63ea99dee0cf304cbe20c6d44fc4aa","attributes":{"AWSTraceHeader":"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1","ApproximateFirstReceiveTimestamp":"1767225600250","ApproximateReceiveCount":"1","MessageDeduplicationId":"order-42","MessageGroupId":"customer-7","SenderId":"AIDAEXAMPLE","SentTimestamp":"1767225600000","SequenceNumber":"18849496460467696128"},"message_attributes":{"kind":{"data_type":"String","string_value":"created"},"sig":{"data_type":"Binary","binary_value":"AAEC/w=="},"total":{"data_type":"Number","string_value":"99.5"}},"queue_url":"https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo"}`

func TestLineOfAReceivedMessage(t *testing.T) {
	t.Parallel()
	l := FromMessage(received())
	b, err := Marshal(&l)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != exampleLine {
		t.Errorf("line:\n%s\nwant:\n%s", b, exampleLine)
	}
	if l.MD5OfBody != MD5(l.Body) || len(l.MD5OfBody) != 32 {
		t.Errorf("md5_of_body %q", l.MD5OfBody)
	}
}

func TestWriteThenReadKeepsEverything(t *testing.T) {
	t.Parallel()
	in := FromMessage(received())
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for range 3 {
		if err := w.Write(&in); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Count(buf.String(), "\n"); got != 3 {
		t.Fatalf("%d newlines, want 3", got)
	}
	r := NewReader(&buf)
	for i := 1; i <= 3; i++ {
		out, n, err := r.Next()
		if err != nil || n != i {
			t.Fatalf("line %d: %v (number %d)", i, err, n)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("read back:\n%+v\nwant:\n%+v", out, in)
		}
	}
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last line: %v, want io.EOF", err)
	}
}

func TestEntryKeepsWhatASendCanSet(t *testing.T) {
	t.Parallel()
	l := FromMessage(received())
	fifo := l.Entry("7", true)
	if aws.ToString(fifo.Id) != "7" || aws.ToString(fifo.MessageBody) != l.Body {
		t.Errorf("id %q body %q", aws.ToString(fifo.Id), aws.ToString(fifo.MessageBody))
	}
	if aws.ToString(fifo.MessageGroupId) != "customer-7" || aws.ToString(fifo.MessageDeduplicationId) != "order-42" {
		t.Errorf("group %q dedup %q", aws.ToString(fifo.MessageGroupId), aws.ToString(fifo.MessageDeduplicationId))
	}
	if got := aws.ToString(fifo.MessageSystemAttributes["AWSTraceHeader"].StringValue); got != l.Attributes["AWSTraceHeader"] {
		t.Errorf("AWSTraceHeader %q", got)
	}
	want := received().Attributes
	if !reflect.DeepEqual(fifo.MessageAttributes, want) {
		t.Errorf("message attributes %+v, want %+v", fifo.MessageAttributes, want)
	}
	if std := l.Entry("7", false); std.MessageDeduplicationId != nil {
		t.Errorf("a standard queue's entry carries deduplication id %q", aws.ToString(std.MessageDeduplicationId))
	}
	if plain := (&Line{Body: "x"}).Entry("1", true); plain.MessageGroupId != nil || plain.MessageSystemAttributes != nil || plain.MessageAttributes != nil {
		t.Errorf("a bare line's entry has more than a body: %+v", plain)
	}
}

func TestSizeIsWhatSQSCounts(t *testing.T) {
	t.Parallel()
	l := Line{Body: strings.Repeat("é", 10), MessageAttributes: map[string]Attribute{
		"a": {DataType: "String", StringValue: "xyz"}, "bin": {DataType: "Binary", BinaryValue: []byte{1, 2}},
	}}
	if got, want := l.Size(), 20+(1+6+3)+(3+6+2); got != want {
		t.Errorf("size %d, want %d", got, want)
	}
	full := Line{Body: strings.Repeat("a", MaxMessageSize)}
	if err := full.Check(); err != nil {
		t.Errorf("a 1 MiB body: %v", err)
	}
	full.Body += "a"
	if err := full.Check(); err == nil || !strings.Contains(err.Error(), "at most 1048576") {
		t.Errorf("a body of 1 MiB + 1: %v", err)
	}
}

func TestBadLinesNameTheProblem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line, want string
	}{
		{"not json", `{"body": "x"`, "not valid JSON"},
		{"garbage", `hello`, "not valid JSON"},
		{"array", `["x"]`, "a JSON array, not an object"},
		{"unknown field", `{"body":"x","bodyy":"y"}`, `unknown field "bodyy": a line has only message_id, body`},
		{"no body", `{"message_id":"1"}`, `no "body"`},
		{"body not a string", `{"body":42}`, `"body" is a JSON number, want a string`},
		{"attributes not an object", `{"body":"x","message_attributes":[]}`, `"message_attributes" is a JSON array, want an object`},
		{"bad base64", `{"body":"x","message_attributes":{"b":{"data_type":"Binary","binary_value":"%%%"}}}`, "not base64"},
		{"empty body", `{"body":""}`, "body is empty"},
		{"nul in body", `{"body":"a\u0000b"}`, "U+0000"},
		{"bad data type", `{"body":"x","message_attributes":{"a":{"data_type":"Str","string_value":"v"}}}`, `data_type "Str"`},
		{"string without value", `{"body":"x","message_attributes":{"a":{"data_type":"String"}}}`, "needs a string_value"},
		{"binary with a string", `{"body":"x","message_attributes":{"a":{"data_type":"Binary","string_value":"v"}}}`, "needs a binary_value"},
		{"bad attribute name", `{"body":"x","message_attributes":{"a b":{"data_type":"String","string_value":"v"}}}`, `message attribute "a b"`},
		{"two objects", `{"body":"x"} {"body":"y"}`, "more than one JSON value"},
		{"too many attributes", `{"body":"x","message_attributes":{` + elevenAttributes() + `}}`, "11 message attributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, n, err := NewReader(strings.NewReader(tt.line + "\n")).Next()
			var le *Error
			if !errors.As(err, &le) || le.Line != 1 || n != 1 {
				t.Fatalf("error %v (line %d), want a line error at line 1", err, n)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "line 1: ") {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func elevenAttributes() string {
	parts := make([]string, 11)
	for i := range parts {
		parts[i] = `"a` + string(rune('a'+i)) + `":{"data_type":"String","string_value":"v"}`
	}
	return strings.Join(parts, ",")
}

func TestReaderGoesOnAfterABadLine(t *testing.T) {
	t.Parallel()
	huge := `{"body":"` + strings.Repeat("a", MaxLineSize) + `"}`
	input := "{\"body\":\"one\"}\r\n\n   \nnot json\n" + huge + "\n{\"body\":\"two\"}"
	r := NewReader(strings.NewReader(input))
	type result struct {
		n    int
		body string
		bad  bool
	}
	var got []result
	for {
		l, n, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var le *Error
		if err != nil && !errors.As(err, &le) {
			t.Fatal(err)
		}
		got = append(got, result{n, l.Body, err != nil})
		if n == 5 && (err == nil || !strings.Contains(err.Error(), "longer than 8 MiB")) {
			t.Errorf("line 5: %v, want it too long", err)
		}
	}
	want := []result{{1, "one", false}, {4, "", true}, {5, "", true}, {6, "two", false}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read %+v, want %+v", got, want)
	}
}

func TestREADMEShowsTheLineAsWritten(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n"+exampleLine+"\n") {
		t.Errorf("README.md does not show the example line as FromMessage writes it:\n%s", exampleLine)
	}
}
