package handler

import (
	"crypto/md5" //nolint:gosec // md5OfBody is SQS's MD5 of the body, a checksum, not security
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"

	"github.com/sqsworker/sqsworker/internal/message"
)

// recordCap is about how many bytes appendRecord writes for msg, enough
// for most messages whose attributes are few and short.
func recordCap(msg *message.Message) int {
	n := 400 + len(msg.Body) + len(msg.ReceiptHandle)
	for k, v := range msg.SystemAttributes {
		n += len(k) + len(v) + 6
	}
	for k, a := range msg.Attributes {
		n += len(k) + 80
		if a.StringValue != nil {
			n += len(*a.StringValue)
		}
		n += len(a.BinaryValue) * 4 / 3
	}
	return n
}

// appendRecord appends Record(msg, region) as JSON to b, byte for byte
// what json.Marshal writes, without reflection: a batch handler encodes
// every message it sends once, into its event.
func appendRecord(b []byte, msg *message.Message, region string) []byte {
	sum := md5.Sum([]byte(msg.Body)) //nolint:gosec // see the import
	arn, rg := queueARN(msg.QueueURL, region)
	b = append(b, `{"messageId":`...)
	b = appendString(b, msg.ID)
	b = append(b, `,"receiptHandle":`...)
	b = appendString(b, msg.ReceiptHandle)
	b = append(b, `,"body":`...)
	b = appendString(b, msg.Body)
	b = append(b, `,"md5OfBody":"`...)
	b = hex.AppendEncode(b, sum[:])
	b = append(b, `","md5OfMessageAttributes":"","attributes":{`...)
	for i, k := range sortedKeys(msg.SystemAttributes) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, msg.SystemAttributes[k])
	}
	b = append(b, `},"messageAttributes":{`...)
	for i, k := range sortedKeys(msg.Attributes) {
		a := msg.Attributes[k]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, `:{`...)
		if a.StringValue != nil {
			b = append(b, `"stringValue":`...)
			b = appendString(b, *a.StringValue)
			b = append(b, ',')
		}
		if len(a.BinaryValue) > 0 {
			b = append(b, `"binaryValue":"`...)
			b = base64.StdEncoding.AppendEncode(b, a.BinaryValue)
			b = append(b, `",`...)
		}
		b = append(b, `"stringListValues":[`...)
		for j, s := range a.StringListValues {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		b = append(b, `],"binaryListValues":[`...)
		for j, v := range a.BinaryListValues {
			if j > 0 {
				b = append(b, ',')
			}
			if v == nil {
				b = append(b, "null"...)
				continue
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, v)
			b = append(b, '"')
		}
		b = append(b, `],"dataType":`...)
		if a.DataType != nil {
			b = appendString(b, *a.DataType)
		} else {
			b = append(b, `""`...)
		}
		b = append(b, '}')
	}
	b = append(b, `},"eventSourceARN":`...)
	b = appendString(b, arn)
	b = append(b, `,"eventSource":"`+EventSource+`","awsRegion":`...)
	b = appendString(b, rg)
	return append(b, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendString appends s as encoding/json writes a string: as it is when
// every byte is printable ASCII that it leaves alone, else by
// encoding/json itself (escapes, HTML characters, invalid UTF-8).
func appendString(b []byte, s string) []byte {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
