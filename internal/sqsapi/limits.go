package sqsapi

import "time"

// SQS's own limits, named once for every package that must respect them.
const (
	// MaxVisibility is how long a message may be kept invisible in all:
	// 12 hours since it was first received.
	MaxVisibility = 12 * time.Hour
	// MaxWaitTime is the longest long poll.
	MaxWaitTime = 20 * time.Second
	// MaxBatchEntries is the most entries one batch call (receive, send,
	// delete, change visibility) takes.
	MaxBatchEntries = 10
	// MaxMessageSize is the largest message, and the largest batch of a
	// SendMessageBatch call: 1 MiB.
	MaxMessageSize = 1 << 20
)
