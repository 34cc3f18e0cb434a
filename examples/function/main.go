// Command function is an example AWS Lambda function for the worker's
// lambda handler: an SQS handler written with aws-lambda-go that reads
// each record as an order (examples/producer) and reports the poison ones
// in batchItemFailures, so that only they are retried and end in the
// dead-letter queue. The same binary runs in AWS Lambda (provided.al2023
// runtime, bootstrap) or in the Lambda runtime interface emulator next to
// the worker (the Dockerfile's example-function stage).
package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

type order struct {
	ID     int  `json:"order_id"`
	Poison bool `json:"poison"`
}

func handle(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	for _, r := range ev.Records {
		var o order
		if err := json.Unmarshal([]byte(r.Body), &o); err != nil || o.Poison {
			log.Printf("order in message %s rejected (receive %s)", r.MessageId, r.Attributes["ApproximateReceiveCount"])
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return resp, nil
}

func main() {
	lambda.Start(handle)
}
