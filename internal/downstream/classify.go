// Package downstream decides whether a received message may start now. A
// circuit breaker tells an outage of what the handler calls from bad
// messages, an adaptive concurrency limit backs off while the downstream
// asks to slow down, and an optional rate limit spaces handler starts. It
// sits between the buffer and the pool, and tells the fetchers when to
// stop receiving: while the downstream is failing, messages in hand are
// held (their leases kept alive) rather than handed back to SQS, where
// every new receive counts toward the dead-letter queue.
package downstream

import (
	"github.com/sqsworker/sqsworker/internal/handler"
)

// Kind is what one handler call says about the downstream.
type Kind int

const (
	// Ignored: the call ended for the worker's own reasons (a forced stop,
	// a lost lease) and says nothing about the downstream.
	Ignored Kind = iota
	// Succeeded: the handler succeeded.
	Succeeded
	// MessageFailed: the handler failed, but the downstream answered: the
	// fault is the message's (a poison message, a 500, a non-zero exit).
	MessageFailed
	// Overloaded: the downstream asked to slow down (429, 503, the exec
	// handler's overload exit code).
	Overloaded
	// Unavailable: the downstream could not be reached or did not answer
	// in time (connection refused or reset, 502, 504, a timeout).
	Unavailable
)

func (k Kind) String() string {
	switch k {
	case Succeeded:
		return "succeeded"
	case MessageFailed:
		return "message_failed"
	case Overloaded:
		return "overloaded"
	case Unavailable:
		return "unavailable"
	default:
		return "ignored"
	}
}

// Classify reads a handler's error. Handlers mark the downstream's
// failures with handler.Unavailable; every other error is the message's.
func Classify(err error) Kind {
	if err == nil {
		return Succeeded
	}
	switch unavailable, overloaded := handler.IsUnavailable(err); {
	case overloaded:
		return Overloaded
	case unavailable:
		return Unavailable
	}
	return MessageFailed
}

// Downstream reports whether k is the downstream's failure rather than
// the message's.
func (k Kind) Downstream() bool { return k == Overloaded || k == Unavailable }
