package sqsworker

import (
	"errors"
	"time"

	"github.com/sqsworker/sqsworker/internal/handler"
)

// RetryAfter is a failure that asks for the message to come back after d
// rather than after the worker's own backoff (SQS allows up to 12h). err
// says what went wrong; nil stands for "retry requested".
func RetryAfter(d time.Duration, err error) error {
	return &handler.RetryAfterError{After: d, Err: orDefault(err, "retry requested")}
}

// DeadLetter is a failure that says the message can never succeed: the
// worker sends a copy to the dead-letter queue of the queue's redrive
// policy at once — body and attributes kept, reason added as the message
// attribute sqsworker.dead_letter_reason — and deletes the message after
// the copy was sent. Without a dead-letter queue the message is retried
// like any failure. reason should come from a small fixed set: it is also
// a metric label.
func DeadLetter(reason string, err error) error {
	return handler.DeadLetter(reason, orDefault(err, "dead-letter: "+reason))
}

// Unavailable is a failure of the handler's downstream, not of the
// message: it refused the connection, timed out, or answered 502 or 504.
// Such failures open the circuit breaker: receives pause, messages in hand
// are held with their leases kept, and one at a time probes the downstream
// until it answers. A message whose last receive fails this way is kept
// and retried in place rather than moved to the dead-letter queue.
func Unavailable(err error) error {
	return handler.Unavailable(orDefault(err, "downstream unavailable"), false)
}

// Overloaded is a failure that says the downstream asked to slow down (as
// HTTP 429 or 503 do): the worker lowers its concurrency limit, and the
// message is retried like an Unavailable one.
func Overloaded(err error) error {
	return handler.Unavailable(orDefault(err, "downstream overloaded"), true)
}

func orDefault(err error, msg string) error {
	if err == nil {
		return errors.New(msg)
	}
	return err
}
