package handler

import "errors"

// UnavailableError is a failure that says the downstream could not take
// the message — it refused the connection, timed out, answered 502, 503
// or 504, or asked to slow down (429, 503) — rather than that the message
// is bad. The worker counts these to tell an outage from a poison message,
// holds the message instead of spending one of its receives, and lowers
// its concurrency when Overloaded.
type UnavailableError struct {
	// Overloaded is set when the downstream asked to slow down (429 or
	// 503, the exec handler's overload exit code).
	Overloaded bool
	Err        error
}

func (e *UnavailableError) Error() string { return e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable marks err as the downstream's failure, not the message's.
func Unavailable(err error, overloaded bool) error {
	return &UnavailableError{Overloaded: overloaded, Err: err}
}

// IsUnavailable reports whether err says the downstream could not take the
// message, and whether it asked to slow down.
func IsUnavailable(err error) (unavailable, overloaded bool) {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return true, ue.Overloaded
	}
	return false, false
}

// DeadLetterError is a failure that says the message can never succeed:
// the worker sends it to the queue's dead-letter queue at once, with
// Reason as a message attribute, instead of retrying it.
type DeadLetterError struct {
	Reason string
	Err    error
}

func (e *DeadLetterError) Error() string { return e.Err.Error() }
func (e *DeadLetterError) Unwrap() error { return e.Err }

// DeadLetter marks err as permanent: the message goes to the dead-letter
// queue now, for reason.
func DeadLetter(reason string, err error) error {
	return &DeadLetterError{Reason: reason, Err: err}
}

// DeadLetterReason reports whether err asks for the message to be
// dead-lettered now, and why.
func DeadLetterReason(err error) (string, bool) {
	var de *DeadLetterError
	if errors.As(err, &de) {
		return de.Reason, true
	}
	return "", false
}
