// Package tools_test runs the tools against the local SQS-compatible
// server, one server for all of them.
package tools_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

var server *sqstest.Server

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m, testkit.StartServer(&server))
}

func createQueue(t *testing.T, prefix string, opts sqstest.QueueOptions) sqstest.Queue {
	t.Helper()
	q, err := server.CreateQueue(t.Context(), prefix, opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// receiveAll receives and deletes messages until n have come, failing
// the test if they do not within a minute.
func receiveAll(t *testing.T, queueURL string, n int) []types.Message {
	t.Helper()
	c := server.Client()
	var got []types.Message
	testkit.Eventually(t, time.Minute, fmt.Sprintf("%d messages in %s", n, queueURL), func() bool {
		out, err := c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			got = append(got, m)
			if _, err := c.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
		return len(got) >= n
	})
	return got
}
