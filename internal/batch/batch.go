// Package batch owns the one way the worker sends SQS batch calls, deletes
// and visibility changes alike: entries are coalesced into calls of up to
// ten, several calls are in flight at once on long-lived senders, each call
// is retried with backoff for what may still succeed, and every entry is
// settled exactly once with its result.
package batch

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// Defaults for Config, and the retry schedule every batch call shares.
const (
	// MaxEntries is the most entries one call takes (SQS's limit).
	MaxEntries = sqsapi.MaxBatchEntries
	// DefaultFlushInterval is how long a coalesced entry waits for nine
	// others before its call is sent.
	DefaultFlushInterval = 10 * time.Millisecond
	// DefaultMaxInFlight is how many calls may be in flight at once.
	DefaultMaxInFlight = 8
	// DefaultRequestTimeout bounds one call.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultAttempts is how many calls are made for an entry that keeps
	// failing transiently.
	DefaultAttempts = 5
	// UnlimitedAttempts retries for as long as the entry's lease lives
	// and the context allows.
	UnlimitedAttempts = -1

	firstBackoff = 50 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// Outcome is how an entry ended.
type Outcome int

const (
	// Applied: SQS applied the entry.
	Applied Outcome = iota
	// Refused: SQS refused the entry for good; Result.Code says why.
	Refused
	// Skipped: not sent, because Config.Live said its lease is gone and
	// its receipt handle must not be used.
	Skipped
	// Abandoned: not applied; the attempts ran out, the call failed for
	// good, or the context ended first.
	Abandoned
	// Superseded: a newer entry for the same message replaced it before
	// it was sent.
	Superseded
)

// Result is what became of one entry.
type Result struct {
	Outcome Outcome
	// Code is SQS's error code of a Refused entry.
	Code string
	// Detail is SQS's code and message of a Refused entry, for a log line.
	Detail string
	// Err is the last error of an Abandoned entry.
	Err error
	// SentAt is when the call that applied the entry was sent: SQS counts
	// a new visibility timeout from then, no earlier.
	SentAt time.Time
}

// Entry is one message of a batch call.
type Entry struct {
	Msg *message.Message
	// Visibility is the new visibility timeout of a visibility change.
	Visibility time.Duration
	// Done, when set, is called once with the entry and its result.
	Done func(Entry, Result)
}

// Call makes one batch request of entries, entry i under the id ID(i),
// and returns the ids SQS applied and the entries it failed.
type Call func(ctx context.Context, entries []Entry) (applied []string, failed []types.BatchResultErrorEntry, err error)

var ids = [MaxEntries]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// ID is the request entry id of the i-th entry of a call: unique per
// request, as SQS requires.
func ID(i int) string {
	if i >= 0 && i < len(ids) {
		return ids[i]
	}
	return strconv.Itoa(i)
}

// IDRef is ID(i) as the SDK's request entries take it; the ids of a full
// call are shared, not allocated per entry. Nobody may write through it.
func IDRef(i int) *string {
	if i >= 0 && i < len(ids) {
		return &ids[i]
	}
	return aws.String(strconv.Itoa(i))
}

func index(id string, n int) (int, bool) {
	i, err := strconv.Atoi(id)
	return i, err == nil && i >= 0 && i < n
}

// IDs is the entry ids of a response's Successful list, for a Call to
// return.
func IDs[T any](successful []T, id func(T) *string) []string {
	out := make([]string, len(successful))
	for i, s := range successful {
		out[i] = aws.ToString(id(s))
	}
	return out
}
