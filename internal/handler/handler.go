// Package handler runs one message through the user's code: an HTTP endpoint
// (sqsd-compatible) or a command, and tells the pool how it went.
package handler

import (
	"context"
	"errors"
	"time"

	"github.com/sqsworker/sqsworker/internal/message"
)

// Handler processes one message. A nil error is success: the message will be
// deleted. Any error is failure: the message is retried after a backoff
// (or after the delay a *RetryAfterError asks for). ctx is cancelled when
// the message's lease is lost, its handler timeout passes, or the worker is
// forced to stop.
type Handler interface {
	Handle(ctx context.Context, msg *message.Message) error
}

// Func adapts a function to Handler.
type Func func(ctx context.Context, msg *message.Message) error

// Handle calls f.
func (f Func) Handle(ctx context.Context, msg *message.Message) error { return f(ctx, msg) }

// RetryAfterError is a failure that asks for the message to come back after
// a given delay rather than after the worker's own backoff.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter reports the delay err asks for, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After, true
	}
	return 0, false
}
