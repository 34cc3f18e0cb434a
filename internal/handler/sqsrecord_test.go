package handler

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/message"
)

// TestEncodeRecordMatchesEncodingJSON: the record encoder writes what
// json.Marshal writes for the same record, whatever the strings hold:
// quotes, backslashes, control characters, HTML characters, non-ASCII,
// U+2028, invalid UTF-8; lists with empty and null members; missing data
// types; no attributes at all.
func TestEncodeRecordMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	awkward := []string{"", "plain", `{"k":"v"}`, "back\\slash", "tab\tnew\nline\r", "\b\f\x00\x1f\x7f",
		"<script>&amp;</script>", "żółć 日本 😀", "line\u2028sep\u2029", "bad\xff\xfeutf8", "\x80"}
	for i, s := range awkward {
		m := &message.Message{
			ID: s, ReceiptHandle: s, Body: s, QueueURL: "https://sqs.us-east-1.amazonaws.com/123456789012/q" + s,
			SystemAttributes: map[string]string{s + "k": s, "ApproximateReceiveCount": "2", "z": "last"},
			Attributes: map[string]types.MessageAttributeValue{
				s + "s":   {DataType: aws.String("String." + s), StringValue: aws.String(s)},
				"b":       {DataType: aws.String("Binary"), BinaryValue: []byte(s)},
				"lists":   {DataType: aws.String("String"), StringListValues: []string{s, ""}, BinaryListValues: [][]byte{nil, {}, []byte(s)}},
				"no-type": {StringValue: aws.String("")},
			},
		}
		if i%2 == 1 {
			m.SystemAttributes, m.Attributes = nil, nil
		}
		want, err := json.Marshal(Record(m, "eu-west-1"))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecord(nil, m, "eu-west-1"); string(got) != string(want) {
			t.Errorf("string %q:\n got %s\nwant %s", s, got, want)
		}
	}
}
