package handler

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

func testMessage() *message.Message {
	return &message.Message{
		ID:              "msg-1",
		Body:            `{"hello":"world"}`,
		QueueURL:        "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
		ReceiveCount:    3,
		FirstReceivedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)),
		GroupID:         "group-a",
		SystemAttributes: map[string]string{
			"SenderId": "AIDAEXAMPLE",
		},
		Attributes: map[string]types.MessageAttributeValue{
			"Tenant":   {DataType: ptr("String"), StringValue: ptr("acme")},
			"Priority": {DataType: ptr("Number"), StringValue: ptr("7")},
			"Blob":     {DataType: ptr("Binary"), BinaryValue: []byte{1, 2}},
			"Bad":      {DataType: ptr("String"), StringValue: ptr("line\r\nInjected: yes")},
		},
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	base := errors.New("busy")
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{name: "nil", err: nil},
		{name: "plain error", err: base},
		{name: "retry after", err: &RetryAfterError{After: 3 * time.Second, Err: base}, want: 3 * time.Second, wantOK: true},
		{name: "wrapped", err: fmt.Errorf("outer: %w", &RetryAfterError{After: time.Minute, Err: base}), want: time.Minute, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := RetryAfter(tt.err)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("RetryAfter() = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
