package handler

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// BatchConfig configures a Batcher.
type BatchConfig struct {
	// Size is the most messages one invocation takes. Required.
	Size int
	// Window is the longest the first message of a batch waits for more.
	// Defaults to 0: a batch is sent as soon as an invocation is free,
	// with whatever came until then and at least gatherWindow after its
	// first message.
	Window time.Duration
	// Invocations is how many invocations may run at once. Required.
	Invocations int
	// FIFO fails, after a message of a batch failed, the later messages
	// of its group in the batch too, so that they come back in order.
	FIFO bool
	// Region fills awsRegion and eventSourceARN when the queue URL does
	// not name a region.
	Region string
	// MaxPayload bounds an event's size. Defaults to MaxInvokePayload.
	MaxPayload int
}

// gatherWindow is how long a batch waits at least for more messages: the
// pool hands over the messages of one receive within microseconds of each
// other, and they belong in one invocation, as Lambda's event source
// mapping sends a receive's messages together.
const gatherWindow = time.Millisecond

// Batcher collects the messages the pool hands it at the same time into
// batches, sends each batch as one Lambda SQS event, and returns each
// message its own result: the pool calls Handle for every message of a
// batch concurrently, and keeps every lease alive until its call returns.
type Batcher struct {
	cfg    BatchConfig
	invoke Invoker
	slots  chan struct{} // one per invocation running

	mu   sync.Mutex
	open *batch // the batch messages join now, nil when none
}

// batch is the messages of one invocation. Its fields but full are
// guarded by the Batcher's mu.
type batch struct {
	calls  []*call
	bytes  int           // of the records, without the event's wrapping
	full   chan struct{} // closed when no more messages may join
	sealed bool
	// gaveUp counts the calls whose context ended before the answer;
	// once it is every call, the invocation is cancelled (cancel), or
	// not made (gone).
	gaveUp int
	gone   bool
	cancel context.CancelFunc
}

// call is one Handle waiting for its batch.
type call struct {
	msg    *message.Message
	record []byte
	err    error
	done   chan struct{}
}

// NewBatcher validates cfg and returns a Batcher sending through inv.
func NewBatcher(cfg BatchConfig, inv Invoker) (*Batcher, error) {
	if cfg.Size < 1 || cfg.Size > MaxBatchSize || (cfg.FIFO && cfg.Size > MaxFIFOBatchSize) {
		return nil, fmt.Errorf("batch: Size %d: must be between 1 and %d (%d on FIFO queues)", cfg.Size, MaxBatchSize, MaxFIFOBatchSize)
	}
	if cfg.Window < 0 || cfg.Window > MaxBatchWindow {
		return nil, fmt.Errorf("batch: Window %s: must be between 0 and %s", cfg.Window, MaxBatchWindow)
	}
	if cfg.Invocations < 1 {
		return nil, fmt.Errorf("batch: Invocations %d: must be 1 or more", cfg.Invocations)
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = MaxInvokePayload
	}
	return &Batcher{cfg: cfg, invoke: inv, slots: make(chan struct{}, cfg.Invocations)}, nil
}

// Handle adds msg to the open batch, or opens one, and returns once that
// batch's invocation answered for msg, or ctx ends.
func (b *Batcher) Handle(ctx context.Context, msg *message.Message) error {
	c := &call{msg: msg, record: encodeRecord(msg, b.cfg.Region), done: make(chan struct{})}
	bt, opened := b.join(c)
	if opened {
		go b.run(bt)
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		b.giveUp(bt)
		return context.Cause(ctx)
	}
}

// giveUp counts a call of bt whose context ended. The invocation is
// cancelled only when every call's has: a message whose lease is lost
// does not cut the batch short for the rest.
func (b *Batcher) giveUp(bt *batch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bt.gaveUp++
	if bt.gaveUp < len(bt.calls) {
		return
	}
	b.sealLocked(bt) // nobody joins a batch nobody waits for
	bt.gone = true
	if bt.cancel != nil {
		bt.cancel()
	}
}

// join adds c to the open batch, or to a new one it opened. A message
// that would make the event larger than MaxPayload closes the open batch
// and opens the next.
func (b *Batcher) join(c *call) (joined *batch, opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bt := b.open
	if bt != nil && eventSize(bt.bytes+len(c.record), len(bt.calls)+1) > b.cfg.MaxPayload {
		b.sealLocked(bt)
		bt = nil
	}
	if bt == nil {
		bt = &batch{full: make(chan struct{})}
		b.open, opened = bt, true
	}
	bt.calls = append(bt.calls, c)
	bt.bytes += len(c.record)
	if len(bt.calls) >= b.cfg.Size {
		b.sealLocked(bt)
	}
	return bt, opened
}

func (b *Batcher) sealLocked(bt *batch) {
	if bt.sealed {
		return
	}
	bt.sealed = true
	close(bt.full)
	if b.open == bt {
		b.open = nil
	}
}

// run waits for bt to fill or its window to pass, then for an invocation
// to be free (messages may still join meanwhile), and sends it.
func (b *Batcher) run(bt *batch) {
	t := time.NewTimer(max(b.cfg.Window, gatherWindow))
	select {
	case <-bt.full:
	case <-t.C:
	}
	t.Stop()
	b.slots <- struct{}{}
	defer func() { <-b.slots }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.mu.Lock()
	b.sealLocked(bt)
	bt.cancel = cancel
	if bt.gone {
		cancel()
	}
	calls := bt.calls
	b.mu.Unlock()
	b.send(ctx, calls)
}

// send invokes the function with calls' messages under ctx, which giveUp
// cancels, and ends every call.
func (b *Batcher) send(ctx context.Context, calls []*call) {
	records := make([][]byte, len(calls))
	ids := make(map[string]bool, len(calls))
	for i, c := range calls {
		records[i] = c.record
		ids[c.msg.ID] = true
	}
	errs := b.results(calls, ids, func() ([]byte, error) { return b.invoke.Invoke(ctx, joinEvent(records)) })
	for i, c := range calls {
		c.err = errs[i]
		close(c.done)
	}
}

// results runs invoke and returns each call's error. With FIFO, a
// message after a failed one of its group failed too.
func (b *Batcher) results(calls []*call, ids map[string]bool, invoke func() ([]byte, error)) []error {
	errs := make([]error, len(calls))
	resp, err := invoke()
	var failed map[string]bool
	if err == nil {
		failed, err = ParseBatchResponse(resp, ids)
	}
	if err != nil {
		for i, c := range calls {
			errs[i] = batchFailed(c.msg, len(calls), err)
		}
		return errs
	}
	var failedGroups map[string]string
	for i, c := range calls {
		switch {
		case failed[c.msg.ID]:
			errs[i] = fmt.Errorf("message %s: the function reported it in batchItemFailures", c.msg.ID)
			if b.cfg.FIFO {
				if failedGroups == nil {
					failedGroups = make(map[string]string)
				}
				if _, ok := failedGroups[c.msg.GroupID]; !ok {
					failedGroups[c.msg.GroupID] = c.msg.ID
				}
			}
		case b.cfg.FIFO && failedGroups[c.msg.GroupID] != "":
			errs[i] = fmt.Errorf("message %s: %w: %s of its group failed before it in the batch", c.msg.ID, ErrGroupFailed, failedGroups[c.msg.GroupID])
		}
	}
	return errs
}

// ErrGroupFailed is the error of a FIFO message that was not processed
// in order: an earlier message of its group in the batch failed.
var ErrGroupFailed = errors.New("earlier message of its FIFO group failed")

// batchFailed is the error of one message of a batch that failed as a
// whole; it wraps err, so what err says about the downstream holds.
func batchFailed(msg *message.Message, n int, err error) error {
	return fmt.Errorf("message %s: batch of %d failed: %w", msg.ID, n, err)
}
