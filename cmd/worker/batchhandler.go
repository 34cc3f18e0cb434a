package main

import (
	"cmp"
	"context"
	"fmt"
	"os"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
)

// newLambdaHandler is the lambda handler: batches of messages, each sent
// as one synchronous invocation of the function.
func newLambdaHandler(cfg config.Config) (handler.Handler, error) {
	inv, err := handler.NewLambda(context.Background(), handler.LambdaConfig{
		Function: cfg.Batch.LambdaFunction, EndpointURL: cfg.Batch.LambdaEndpointURL, Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("--lambda-function: %w", err)
	}
	return newBatcher(cfg, inv)
}

// newBatcher sends the batches the pipeline gathers, of the configured
// size and window, to inv; --concurrency is invocations at once.
func newBatcher(cfg config.Config, inv handler.Invoker) (handler.Handler, error) {
	b, err := handler.NewBatcher(handler.BatchConfig{
		Size:   cfg.Batch.Size(cfg.Handler),
		Window: cfg.Batch.BatchWindow,
		FIFO:   cfg.FIFO(),
		Region: cmp.Or(cfg.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION")),
	}, inv)
	if err != nil {
		return nil, fmt.Errorf("--batch-size, --batch-window: %w", err)
	}
	return b, nil
}

// pipelineConcurrency is how many messages the pipeline runs at once:
// with a batch handler every message of every invocation in flight, whose
// lease the heartbeats keep alive; the pipeline runs as many invocations
// at once as --concurrency says.
func pipelineConcurrency(cfg config.Config) int {
	if n := cfg.Batch.Size(cfg.Handler); n > 0 {
		return cfg.Concurrency * n
	}
	return cfg.Concurrency
}
