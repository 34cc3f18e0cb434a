package main

import "github.com/sqsworker/sqsworker/internal/config"

// batchFlags declares the flags of the batch handlers: the lambda
// handler, and http batches.
func batchFlags(f *flagSet, b *config.Batch) {
	f.group("Batches (lambda handler, http batches)")
	f.Var(&b.LambdaFunction, "lambda-function", "lambda handler: function invoked (RequestResponse) with each batch as Lambda's SQS event: name, name:alias or ARN (\"function\" for the runtime interface emulator)")
	f.Var(&b.LambdaEndpointURL, "lambda-endpoint-url", "lambda handler: Lambda endpoint, such as http://127.0.0.1:8080 for the runtime interface emulator (default: AWS_ENDPOINT_URL_LAMBDA, else the region's)")
	f.Var(&b.BatchSize, "batch-size", "lambda handler: most messages one invocation takes, 1-10000 (1-10 on FIFO queues; a batch over the 6 MB invoke limit is split); --concurrency is invocations at once")
	f.Var(&b.BatchWindow, "batch-window", "longest a batch waits to fill, 0s-5m (0s: sent as soon as an invocation is free)")
	f.Var(&b.HTTPBatchSize, "http-batch-size", "http handler: POST batches of up to this many messages as Lambda's SQS event, read the answer as Lambda does (batchItemFailures); --concurrency is requests at once (0: one sqsd request per message)")
}
