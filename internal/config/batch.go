package config

import (
	"net/url"
	"time"

	"github.com/sqsworker/sqsworker/internal/handler"
)

// Defaults of Batch.
const (
	// DefaultBatchSize is Lambda's default for an SQS event source.
	DefaultBatchSize = 10
	// DefaultBatchWindow sends a batch as soon as an invocation is free.
	DefaultBatchWindow = time.Duration(0)
)

// Batch configures the batch handlers: the lambda handler, and the http
// handler with HTTPBatchSize. Each invocation takes a batch of messages
// as Lambda's SQS event; Concurrency is how many invocations run at once.
type Batch struct {
	// LambdaFunction is the function the lambda handler invokes: a name,
	// name:alias or ARN ("function" for the runtime interface emulator).
	LambdaFunction string
	// LambdaEndpointURL overrides the Lambda endpoint. Defaults to the
	// SDK's resolution (AWS_ENDPOINT_URL_LAMBDA, AWS_ENDPOINT_URL,
	// AWS_REGION).
	LambdaEndpointURL string
	// BatchSize is the most messages one lambda invocation takes: 1 to
	// 10000, at most 10 on a FIFO queue. Defaults to 10.
	BatchSize int
	// BatchWindow is the longest a batch waits to fill, 0 to 5m.
	// Defaults to 0: sent as soon as an invocation is free.
	BatchWindow time.Duration
	// HTTPBatchSize, above 1, makes the http handler POST batches of up
	// to this many messages as one Lambda SQS event. Defaults to 0: one
	// sqsd request per message.
	HTTPBatchSize int
}

// DefaultBatch returns Batch with its defaults.
func DefaultBatch() Batch {
	return Batch{BatchSize: DefaultBatchSize, BatchWindow: DefaultBatchWindow}
}

// Size is how many messages one invocation takes with handlerKind, 0 when
// it handles one message per call.
func (b *Batch) Size(handlerKind string) int {
	switch {
	case handlerKind == "lambda":
		return b.BatchSize
	case handlerKind == "http" && b.HTTPBatchSize > 1:
		return b.HTTPBatchSize
	}
	return 0
}

// validateBatch checks Batch for c's handler. done is true when the
// handler is lambda, which it validated whole.
func (c *Config) validateBatch() (done bool, err error) {
	if done, err = c.validateBatchFields(); err != nil {
		return done, err
	}
	// The pipeline holds every message of every invocation in flight.
	if size := c.Batch.Size(c.Handler); size > 0 && c.Concurrency*size > MaxConcurrency {
		field := "HTTPBatchSize"
		if c.Handler == "lambda" {
			field = "BatchSize"
		}
		return done, invalid(field, "is %d, and with {Concurrency} %d the worker would hold %d messages at once: at most %d; lower either",
			size, c.Concurrency, c.Concurrency*size, MaxConcurrency)
	}
	return done, nil
}

func (c *Config) validateBatchFields() (done bool, err error) {
	b := &c.Batch
	fifo := c.FIFO()
	maxSize := handler.MaxBatchSize
	if fifo {
		maxSize = handler.MaxFIFOBatchSize
	}
	if b.BatchWindow < 0 || b.BatchWindow > handler.MaxBatchWindow {
		return false, invalid("BatchWindow", "is %s: it must be between 0 (send when an invocation is free) and %s", b.BatchWindow, handler.MaxBatchWindow)
	}
	if b.HTTPBatchSize < 0 || b.HTTPBatchSize > maxSize {
		return false, invalid("HTTPBatchSize", "is %d: it must be between 0 (one request per message) and %d%s", b.HTTPBatchSize, maxSize, fifoNote(fifo))
	}
	if c.Handler != "lambda" {
		if b.LambdaFunction != "" {
			return false, invalid("LambdaFunction", "is set but {Handler} is %s: add {Handler} lambda", c.Handler)
		}
		return false, nil
	}
	if b.LambdaFunction == "" {
		return true, invalid("LambdaFunction", "is required with the lambda handler: the function's name or ARN (\"function\" for the runtime interface emulator)")
	}
	if b.BatchSize < 1 || b.BatchSize > maxSize {
		return true, invalid("BatchSize", "is %d: it must be between 1 and %d%s", b.BatchSize, maxSize, fifoNote(fifo))
	}
	if b.HTTPBatchSize != 0 {
		return true, invalid("HTTPBatchSize", "is set but {Handler} is lambda: use {BatchSize}")
	}
	if len(c.Exec) > 0 || c.HTTPURL != "" {
		return true, invalid("Handler", "is lambda, but {HTTPURL} or {Exec} is set too: choose one handler")
	}
	if e := b.LambdaEndpointURL; e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return true, invalid("LambdaEndpointURL", "is %q: it must be an http(s) URL, such as http://127.0.0.1:8080 for the runtime interface emulator", e)
		}
	}
	return true, nil
}

func fifoNote(fifo bool) string {
	if fifo {
		return " on a FIFO queue"
	}
	return ""
}
