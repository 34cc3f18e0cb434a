package redrive

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
)

// mover is one redrive run: it reads the dead-letter queue, decides what
// each message does, sends the copies in batches, and deletes each
// original once its copy was sent.
type mover struct {
	cfg     Config
	api     API
	log     *zap.Logger
	r       *receive.Receiver
	filter  *Filter
	router  *router
	limit   *rate.Limiter
	dry     *line.Writer
	senders map[*target]*batch.Sender
	pending map[*target]*pending
	atStart int // the messages the queue held at the start: the most read

	mu     sync.Mutex // guards report, fatal and sent: sends settle on the senders' goroutines
	report Report
	fatal  error // a target that cannot be sent to: the run stops
	// sent holds the message ids of the copies SQS took, hashed: 8 bytes
	// a copy rather than its id. A collision would leave one message in
	// the dead-letter queue as if it had come back, never lose it.
	seed maphash.Seed
	sent map[uint64]struct{}
}

// pending is a target's next batch: at most ten messages, at most
// line.MaxMessageSize in all.
type pending struct {
	msgs []*message.Message
	size int
}

// run reads messages until they end, ctx is done or the run must stop,
// sending each target's batch when it is full or no message is waiting.
func (m *mover) run(ctx context.Context) error {
	defer m.flushAll(ctx)
	for {
		msg, err := m.r.Next(ctx, func() error { m.flushAll(ctx); return nil })
		if err != nil || msg == nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			m.r.Hold(msg)
			return err
		}
		if err := m.failed(); err != nil {
			m.r.Hold(msg)
			return nil // Run returns it
		}
		done, err := m.one(ctx, msg)
		if err != nil || done {
			return err
		}
	}
}

// one decides what becomes of msg; done says Max messages have moved,
// or every message the queue held at the start has been read.
func (m *mover) one(ctx context.Context, msg *message.Message) (done bool, err error) {
	if m.ours(msg.ID) {
		m.r.Hold(msg)
		m.count(func(r *Report) { r.Returned++ })
		return false, nil
	}
	read := 0
	m.count(func(r *Report) { r.Read++; read = r.Read; r.AllRead = r.Read >= m.atStart })
	done, err = m.decide(ctx, msg)
	return done || read >= m.atStart, err
}

// decide moves msg, holds it or writes its line; done says Max messages
// have moved.
func (m *mover) decide(ctx context.Context, msg *message.Message) (done bool, err error) {
	l := line.FromMessage(msg)
	if m.filter != nil {
		match, err := m.filter.Match(ctx, &l)
		if err != nil {
			m.r.Hold(msg)
			m.count(func(r *Report) { r.FilterErrors++ })
			m.problem(msg.ID, fmt.Sprintf("the filter failed on it: %v", err))
			return false, nil
		}
		if !match {
			m.r.Hold(msg)
			m.count(func(r *Report) { r.Kept++ })
			return false, nil
		}
	}
	t, err := m.router.route(ctx, msg)
	if err != nil {
		m.r.Hold(msg)
		return false, err
	}
	matched := 0
	m.count(func(r *Report) { r.Matched++; matched = r.Matched })
	if m.dry != nil {
		err := m.dry.Write(&l)
		m.r.Hold(msg)
		if err != nil {
			return false, fmt.Errorf("write a line: %w", err)
		}
		m.count(func(r *Report) { r.ByTarget[t.name]++ })
		return m.cfg.Max > 0 && matched >= m.cfg.Max, nil
	}
	if m.limit != nil {
		if m.limit.Tokens() < 1 {
			m.flushAll(ctx) // send what is ready rather than hold it while waiting
		}
		if err := m.limit.Wait(ctx); err != nil {
			m.r.Hold(msg)
			m.count(func(r *Report) { r.Unsent++ })
			return false, err
		}
	}
	p := m.pending[t]
	if p == nil {
		p = &pending{}
		m.pending[t] = p
	}
	if size := l.Size(); len(p.msgs) == batch.MaxEntries || p.size+size > line.MaxMessageSize {
		m.flush(ctx, t)
	}
	p.msgs = append(p.msgs, msg)
	p.size += l.Size()
	return m.cfg.Max > 0 && matched >= m.cfg.Max, nil
}

func (m *mover) flushAll(ctx context.Context) {
	for t := range m.pending {
		m.flush(ctx, t)
	}
	if m.cfg.OnProgress != nil {
		m.mu.Lock()
		r := m.report
		m.mu.Unlock()
		m.cfg.OnProgress(r)
	}
}

// flush sends t's batch and waits for it to settle. A send under way is
// let finish when ctx is cancelled: what SQS took is then deleted here.
func (m *mover) flush(ctx context.Context, t *target) {
	p := m.pending[t]
	if p == nil || len(p.msgs) == 0 {
		return
	}
	entries := make([]batch.Entry, len(p.msgs))
	for i, msg := range p.msgs {
		entries[i] = batch.Entry{Msg: msg, Done: func(e batch.Entry, res batch.Result) { m.settled(ctx, t, e.Msg, res) }}
	}
	p.msgs, p.size = p.msgs[:0], 0
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
	defer cancel()
	m.sender(ctx, t).Send(sctx, entries)
}

// sender is t's batch sender, started on first use.
func (m *mover) sender(ctx context.Context, t *target) *batch.Sender {
	s, ok := m.senders[t]
	if !ok {
		s = batch.NewSender(batch.Config{Action: "send", QueueURL: t.url}, m.sendCall(t), m.log.Named("redrive"))
		_ = s.Start(context.WithoutCancel(ctx))
		m.senders[t] = s
	}
	return s
}

// sendCall is the SendMessageBatch of t's batches: each message's line
// as a send entry, and into a FIFO queue a deduplication id derived from
// the message's id.
func (m *mover) sendCall(t *target) batch.Call {
	return func(ctx context.Context, entries []batch.Entry) ([]string, []types.BatchResultErrorEntry, error) {
		req := make([]types.SendMessageBatchRequestEntry, len(entries))
		for i, e := range entries {
			l := line.FromMessage(e.Msg)
			req[i] = l.Entry(batch.ID(i), t.fifo)
			if t.fifo {
				req[i].MessageDeduplicationId = aws.String(DeduplicationID(e.Msg.ID))
			}
		}
		out, err := m.api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(t.url), Entries: req})
		if err != nil {
			return nil, nil, err
		}
		m.remember(out.Successful)
		return batch.IDs(out.Successful, func(s types.SendMessageBatchResultEntry) *string { return s.Id }), out.Failed, nil
	}
}

// settled deletes a message whose copy was sent, and holds one whose
// send failed, so that it stays in the dead-letter queue.
func (m *mover) settled(ctx context.Context, t *target, msg *message.Message, res batch.Result) {
	switch res.Outcome {
	case batch.Applied:
		m.r.Delete(ctx, msg)
		m.count(func(r *Report) { r.Moved++; r.ByTarget[t.name]++ })
	case batch.Refused:
		m.r.Hold(msg)
		m.count(func(r *Report) { r.Refused++ })
		m.problem(msg.ID, fmt.Sprintf("%s refused it: %s", t.name, res.Detail))
	default:
		m.r.Hold(msg)
		m.count(func(r *Report) { r.Unsent++ })
		m.mu.Lock()
		if m.fatal == nil {
			m.fatal = fmt.Errorf("cannot send to %s: %w", t.name, res.Err)
		}
		m.mu.Unlock()
	}
}

// remember records the copies SQS took, before their originals are
// deleted and before the run reads on: a copy cannot come back unknown.
func (m *mover) remember(copies []types.SendMessageBatchResultEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range copies {
		m.sent[maphash.String(m.seed, aws.ToString(c.MessageId))] = struct{}{}
	}
}

// ours says a message is a copy this run sent, back in the dead-letter
// queue.
func (m *mover) ours(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.sent[maphash.String(m.seed, id)]
	return ok
}

func (m *mover) failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fatal
}

func (m *mover) count(f func(*Report)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.report)
}

func (m *mover) problem(id, reason string) {
	if m.cfg.OnProblem == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.OnProblem(Problem{MessageID: id, Reason: reason})
}
