// Package sqsworker consumes an Amazon SQS queue with a Go function: it
// long-polls the queue, runs a [Handler] per message with bounded
// concurrency, keeps each message invisible while its handler runs
// (batched heartbeats), deletes it in batches only after the handler
// succeeded, retries failures with a growing delay, keeps FIFO order per
// message group, protects a failing downstream with a circuit breaker and
// an adaptive concurrency limit, and shuts down without losing or
// stranding a message.
//
// Build a [Worker] over your own SQS client (your aws.Config, credentials,
// retries and middleware) with [New], then [Worker.Run] it, or
// [Worker.Start] it and end it with [Worker.Stop] (graceful) or
// [Worker.StopAndCancel] (forced):
//
//	cfg, _ := config.LoadDefaultConfig(ctx)
//	w, err := sqsworker.New(sqs.NewFromConfig(cfg), "orders",
//		sqsworker.HandlerFunc(func(ctx context.Context, m *sqsworker.Message) error {
//			return process(ctx, m.Body)
//		}),
//		&sqsworker.Config{Concurrency: 32})
//	if err != nil { ... }
//	err = w.Run(ctx) // until ctx ends, then a graceful stop
//
// A handler's nil error deletes the message; any other error retries it
// after a delay that doubles with each receive, until the queue's redrive
// policy moves it to the dead-letter queue. [RetryAfter] asks for a given
// delay, [DeadLetter] sends the message to the dead-letter queue at once,
// and [Unavailable] and [Overloaded] say the handler's downstream, not the
// message, failed: such messages are held rather than retried while the
// circuit breaker is open.
//
// The worker opens no port and registers no metric unless asked:
// [WithRegisterer] puts its Prometheus collectors on your registry,
// [WithLogger] gives it a zap logger, [WithTracerProvider] a span per
// message. The worker binary's `run` subcommand is built on this package.
package sqsworker
