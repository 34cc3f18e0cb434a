package handler

import (
	"bytes"
	"crypto/md5" //nolint:gosec // md5OfBody is SQS's MD5 of the body, a checksum, not security
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-lambda-go/events"

	"github.com/sqsworker/sqsworker/internal/message"
)

// EventSource is what Lambda's SQS event says of where its records come
// from, and what the batch handlers say too.
const EventSource = "aws:sqs"

// eventStart and eventEnd wrap the records of an event the way
// json.Marshal(events.SQSEvent) does, so records encoded once can be
// joined into events of any size without encoding them again.
const (
	eventStart = `{"Records":[`
	eventEnd   = `]}`
)

// Record is msg as one record of Lambda's SQS event (events.SQSMessage):
// every field Lambda sets, attributes as strings (FIFO ones included),
// message attributes with their lists present and empty, as Lambda sends
// them. region and the queue's ARN come from the queue URL when it names
// them (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), region otherwise.
func Record(msg *message.Message, region string) events.SQSMessage {
	sum := md5.Sum([]byte(msg.Body)) //nolint:gosec // see the import
	arn, rg := queueARN(msg.QueueURL, region)
	attrs := make(map[string]string, len(msg.SystemAttributes))
	for k, v := range msg.SystemAttributes {
		attrs[k] = v
	}
	mattrs := make(map[string]events.SQSMessageAttribute, len(msg.Attributes))
	for name, a := range msg.Attributes {
		ea := events.SQSMessageAttribute{
			StringValue:      a.StringValue,
			BinaryValue:      a.BinaryValue,
			StringListValues: a.StringListValues,
			BinaryListValues: a.BinaryListValues,
		}
		if a.DataType != nil {
			ea.DataType = *a.DataType
		}
		if ea.StringListValues == nil {
			ea.StringListValues = []string{}
		}
		if ea.BinaryListValues == nil {
			ea.BinaryListValues = [][]byte{}
		}
		mattrs[name] = ea
	}
	return events.SQSMessage{
		MessageId:         msg.ID,
		ReceiptHandle:     msg.ReceiptHandle,
		Body:              msg.Body,
		Md5OfBody:         hex.EncodeToString(sum[:]),
		Attributes:        attrs,
		MessageAttributes: mattrs,
		EventSourceARN:    arn,
		EventSource:       EventSource,
		AWSRegion:         rg,
	}
}

// queueARN derives the queue's ARN and region from its URL:
// https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, or any host with
// /ACCOUNT/NAME, in region then.
func queueARN(queueURL, region string) (arn, rg string) {
	key := queueURL + "\x00" + region
	if v, ok := queueARNs.Load(key); ok {
		a := v.(arnRegion)
		return a.arn, a.region
	}
	arn, rg = parseQueueARN(queueURL, region)
	queueARNs.Store(key, arnRegion{arn, rg})
	return arn, rg
}

// queueARNs remembers queueARN's answers: a worker reads one queue, and
// every record of every batch names it.
var queueARNs sync.Map

type arnRegion struct{ arn, region string }

func parseQueueARN(queueURL, region string) (arn, rg string) {
	rg = region
	u, err := url.Parse(queueURL)
	if err != nil {
		return "", rg
	}
	if host := strings.Split(u.Hostname(), "."); len(host) >= 3 && host[0] == "sqs" && host[1] != "amazonaws" {
		rg = host[1]
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 {
		return "", rg
	}
	partition := "aws"
	switch {
	case strings.HasPrefix(rg, "cn-"):
		partition = "aws-cn"
	case strings.HasPrefix(rg, "us-gov-"):
		partition = "aws-us-gov"
	}
	return fmt.Sprintf("arn:%s:sqs:%s:%s:%s", partition, rg, parts[0], parts[1]), rg
}

// FunctionError is a batch whose function failed as a whole: it returned
// an error, panicked or timed out. Every message of the batch failed.
type FunctionError struct {
	// Type is the runtime's errorType ("Runtime.ExitError", a Go error's
	// type), or how it was told ("Unhandled").
	Type string
}

func (e *FunctionError) Error() string { return "function error: " + e.Type }

// errMalformed says the response cannot be read as Lambda reads it.
var errMalformed = errors.New("malformed batch response")

// ParseBatchResponse reads a function's answer to an SQS event as Lambda
// does with ReportBatchItemFailures: an empty or null answer, or one
// without batchItemFailures (or with an empty or null list), is success
// for every message; otherwise each listed itemIdentifier failed. It
// returns an error — the whole batch failed — for an answer that is not
// JSON, a runtime's error object ({"errorMessage","errorType"}), and an
// itemIdentifier that is missing, null, empty, not a string or not one of
// ids.
func ParseBatchResponse(payload []byte, ids map[string]bool) (failed map[string]bool, err error) {
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 || bytes.Equal(payload, []byte("null")) {
		return nil, nil
	}
	if !json.Valid(payload) {
		return nil, fmt.Errorf("%w: not JSON (%d bytes)", errMalformed, len(payload))
	}
	if payload[0] != '{' {
		return nil, nil // Lambda reads batchItemFailures of an object only
	}
	var resp struct {
		BatchItemFailures []map[string]json.RawMessage `json:"batchItemFailures"`
		ErrorType         *string                      `json:"errorType"`
		ErrorMessage      *string                      `json:"errorMessage"`
	}
	if err := json.Unmarshal(payload, &resp); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if resp.BatchItemFailures == nil && (resp.ErrorType != nil || resp.ErrorMessage != nil) {
		t := "Unhandled"
		if resp.ErrorType != nil && *resp.ErrorType != "" {
			t = *resp.ErrorType
		}
		return nil, &FunctionError{Type: t}
	}
	for i, item := range resp.BatchItemFailures {
		raw, ok := item["itemIdentifier"]
		var id string
		if !ok || json.Unmarshal(raw, &id) != nil || id == "" {
			return nil, fmt.Errorf("%w: batchItemFailures[%d] has no itemIdentifier string", errMalformed, i)
		}
		if !ids[id] {
			return nil, fmt.Errorf("%w: batchItemFailures[%d] names %q, not a message of the batch", errMalformed, i, id)
		}
		if failed == nil {
			failed = make(map[string]bool, len(resp.BatchItemFailures))
		}
		failed[id] = true
	}
	return failed, nil
}
