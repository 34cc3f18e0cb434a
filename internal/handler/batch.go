package handler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sqsworker/sqsworker/internal/message"
)

// Limits of a batch, as Lambda's event source mapping for SQS has them.
const (
	// MaxBatchSize is the most messages one invocation takes from a
	// standard queue.
	MaxBatchSize = 10000
	// MaxFIFOBatchSize is the most from a FIFO queue.
	MaxFIFOBatchSize = 10
	// MaxBatchWindow is the longest a batch waits to fill.
	MaxBatchWindow = 5 * time.Minute
	// MaxInvokePayload is the largest event a synchronous Invoke takes:
	// a batch that would be larger is split.
	MaxInvokePayload = 6 * 1024 * 1024
)

// Invoker sends one SQS event and returns the function's answer, to be
// read by ParseBatchResponse. An error means the invocation as a whole
// failed; mark the downstream's failures with Unavailable.
type Invoker interface {
	Invoke(ctx context.Context, event []byte) ([]byte, error)
}

// BatchHandler handles messages a batch at a time: the pool hands it up
// to size messages at once, gathered for at most window, and settles each
// message by its own result.
type BatchHandler interface {
	Handler
	// HandleBatch returns each message's result, in the order of msgs. ctx
	// is cancelled once every message's lease is lost, when the handler
	// timeout passes, or on a forced stop.
	HandleBatch(ctx context.Context, msgs []*message.Message) []error
	// Batching is the most messages one call takes, and how long the
	// pool waits at most for a batch to fill.
	Batching() (size int, window time.Duration)
}

// BatchConfig configures a Batcher.
type BatchConfig struct {
	// Size is the most messages one invocation takes. Required.
	Size int
	// Window is the longest the first message of a batch waits for more.
	// Defaults to 0: a batch is sent as soon as an invocation is free,
	// with the messages waiting then.
	Window time.Duration
	// FIFO fails, after a message of a batch failed, the later messages
	// of its group in the batch too, so that they come back in order.
	FIFO bool
	// Region fills awsRegion and eventSourceARN when the queue URL does
	// not name a region.
	Region string
	// MaxPayload bounds an event's size. Defaults to MaxInvokePayload.
	MaxPayload int
}

// Batcher sends each batch the pool hands it as one Lambda SQS event (two
// or more when it would exceed MaxPayload) and returns each message its
// own result, read from the answer as Lambda reads it.
type Batcher struct {
	cfg    BatchConfig
	invoke Invoker
}

// NewBatcher validates cfg and returns a Batcher sending through inv.
func NewBatcher(cfg BatchConfig, inv Invoker) (*Batcher, error) {
	if cfg.Size < 1 || cfg.Size > MaxBatchSize || (cfg.FIFO && cfg.Size > MaxFIFOBatchSize) {
		return nil, fmt.Errorf("batch: Size %d: must be between 1 and %d (%d on FIFO queues)", cfg.Size, MaxBatchSize, MaxFIFOBatchSize)
	}
	if cfg.Window < 0 || cfg.Window > MaxBatchWindow {
		return nil, fmt.Errorf("batch: Window %s: must be between 0 and %s", cfg.Window, MaxBatchWindow)
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = MaxInvokePayload
	}
	return &Batcher{cfg: cfg, invoke: inv}, nil
}

// Batching is the batch size and window the Batcher was configured with.
func (b *Batcher) Batching() (size int, window time.Duration) { return b.cfg.Size, b.cfg.Window }

// Handle sends msg as a batch of one.
func (b *Batcher) Handle(ctx context.Context, msg *message.Message) error {
	return b.HandleBatch(ctx, []*message.Message{msg})[0]
}

// HandleBatch sends msgs as one event, or as several in order when one
// would be larger than MaxPayload, and returns each message's result.
func (b *Batcher) HandleBatch(ctx context.Context, msgs []*message.Message) []error {
	errs := make([]error, len(msgs))
	size := len(eventStart) + len(eventEnd)
	for _, m := range msgs {
		size += recordCap(m)
	}
	event := make([]byte, 0, min(size, b.cfg.MaxPayload+len(eventEnd)))
	event = append(event, eventStart...)
	first := 0
	for i, m := range msgs {
		mark := len(event)
		if i > first {
			event = append(event, ',')
		}
		event = appendRecord(event, m, b.cfg.Region)
		if i == first || len(event)+len(eventEnd) <= b.cfg.MaxPayload {
			continue
		}
		// m does not fit: send the messages before it, and start the next
		// event with it.
		b.send(ctx, msgs[first:i], append(event[:mark], eventEnd...), errs[first:i])
		first = i
		event = appendRecord(append(make([]byte, 0, cap(event)), eventStart...), m, b.cfg.Region)
	}
	b.send(ctx, msgs[first:], append(event, eventEnd...), errs[first:])
	return errs
}

// send invokes the function with event, the records of msgs, and sets
// each message's error in errs.
func (b *Batcher) send(ctx context.Context, msgs []*message.Message, event []byte, errs []error) {
	ids := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		ids[m.ID] = true
	}
	b.results(msgs, ids, errs, func() ([]byte, error) { return b.invoke.Invoke(ctx, event) })
}

// results runs invoke and sets each message's error in errs. With FIFO, a
// message after a failed one of its group failed too.
func (b *Batcher) results(msgs []*message.Message, ids map[string]bool, errs []error, invoke func() ([]byte, error)) {
	resp, err := invoke()
	var failed map[string]bool
	if err == nil {
		failed, err = ParseBatchResponse(resp, ids)
	}
	if err != nil {
		for i, m := range msgs {
			errs[i] = batchFailed(m, len(msgs), err)
		}
		return
	}
	var failedGroups map[string]string
	for i, m := range msgs {
		switch {
		case failed[m.ID]:
			errs[i] = fmt.Errorf("message %s: the function reported it in batchItemFailures", m.ID)
			if b.cfg.FIFO {
				if failedGroups == nil {
					failedGroups = make(map[string]string)
				}
				if _, ok := failedGroups[m.GroupID]; !ok {
					failedGroups[m.GroupID] = m.ID
				}
			}
		case b.cfg.FIFO && failedGroups[m.GroupID] != "":
			errs[i] = fmt.Errorf("message %s: %w: %s of its group failed before it in the batch", m.ID, ErrGroupFailed, failedGroups[m.GroupID])
		}
	}
}

// ErrGroupFailed is the error of a FIFO message that was not processed
// in order: an earlier message of its group in the batch failed.
var ErrGroupFailed = errors.New("earlier message of its FIFO group failed")

// batchFailed is the error of one message of a batch that failed as a
// whole; it wraps err, so what err says about the downstream holds.
func batchFailed(msg *message.Message, n int, err error) error {
	return fmt.Errorf("message %s: batch of %d failed: %w", msg.ID, n, err)
}
