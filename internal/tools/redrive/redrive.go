// Package redrive moves messages out of a dead-letter queue: each to its
// own source queue (or one named target), batched, attributes kept, and
// deleted from the dead-letter queue only once its send succeeded.
// Messages a filter does not select, and those a target refuses, stay
// where they are: held for the run, so that they are read once, and
// released at its end. A run is bounded by what the dead-letter queue held
// when it started: a copy it sent that fails again and comes back is left
// there, not moved a second time.
package redrive

import (
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/receive"
)

// API is what a redrive needs from SQS.
type API interface {
	receive.API
	sqsapi.SourcesAPI
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Config configures a redrive.
type Config struct {
	// Config reads the dead-letter queue; its QueueURL is From's.
	receive.Config
	// From is the dead-letter queue, as sqsapi.DescribeQueue read it.
	// Required.
	From sqsapi.Queue
	// To, when set, is where every message goes; nil sends each to its
	// own source queue.
	To *sqsapi.Queue
	// Filter, when set, is a jq expression: only the messages whose line
	// it selects move.
	Filter string
	// Rate caps the messages sent per second; 0 means no cap.
	Rate float64
	// DryRun moves and deletes nothing: the lines that would move are
	// written to DryRunOut.
	DryRun    bool
	DryRunOut io.Writer
	// Max, when positive, moves at most this many messages.
	Max int
	// OnProblem is told of each message that stays for a reason other
	// than the filter. Calls do not overlap.
	OnProblem func(Problem)
	// OnProgress is told the counts after each batch. Calls do not
	// overlap.
	OnProgress func(Report)
}

// Validate checks the settings, naming the field that is wrong (the
// queues are checked by Run).
func (c *Config) Validate() error {
	switch {
	case c.Rate < 0:
		return &config.FieldError{Field: "Rate", Msg: "is negative: it must be above 0 messages per second (0: no cap)"}
	case c.Max < 0:
		return &config.FieldError{Field: "Max", Msg: fmt.Sprintf("is %d: it must be 0 (no limit) or more", c.Max)}
	}
	if c.Filter != "" {
		if _, err := ParseFilter(c.Filter); err != nil {
			return &config.FieldError{Field: "Filter", Msg: fmt.Sprintf("%q is not a jq expression: %v", c.Filter, err)}
		}
	}
	return c.Config.Validate()
}

// Problem is a message that stays in the dead-letter queue, and why.
type Problem struct {
	MessageID string
	Reason    string
}

// Report counts what a redrive did with each message it read: Read =
// Matched + Kept + FilterErrors (+ the one that had no target, when the
// run stopped on it); Matched = Moved + Refused + Unsent (with DryRun,
// none of these: Matched would move).
type Report struct {
	// AtStart is the messages the dead-letter queue held when the run
	// started (visible, in flight and delayed): the most it reads.
	AtStart int
	// Read is the messages received from the dead-letter queue, not
	// counting Returned.
	Read int
	// Returned is the copies this run sent that came back into the
	// dead-letter queue during the run (their consumer failed on them
	// again); they stay there, not moved again.
	Returned int
	// Matched is the messages the filter selected (every one without).
	Matched int
	// Moved is the messages sent and then queued for deletion.
	Moved int
	// ByTarget counts Moved (with DryRun, Matched) per target queue name.
	ByTarget map[string]int
	// Kept is the messages the filter did not select.
	Kept int
	// FilterErrors is the messages the filter failed on; they stay.
	FilterErrors int
	// Refused is the messages a target refused; they stay.
	Refused int
	// Unsent is the messages whose send did not complete before the run
	// stopped; they stay.
	Unsent int
	// Deleted is the deletes SQS confirmed, known once Run returns: a
	// moved message not deleted is in both queues.
	Deleted int
	// AllRead says reading stopped because AtStart messages were read:
	// those that came in since were not.
	AllRead bool
	// End is why reading ended; Left is the dead-letter queue's counts
	// then, when it ended Empty or Blocked, and after the run when
	// AllRead.
	End  receive.End
	Left sqsapi.Counts
}

// Stays is how many of the messages the run read, and of the copies that
// came back, are still in the dead-letter queue: all but those deleted.
func (r *Report) Stays() int { return r.Read + r.Returned - r.Deleted }

const (
	closeTimeout = 2 * time.Minute
	// sendTimeout bounds the sends of one batch, retries included.
	sendTimeout = time.Minute
)

// Run moves the dead-letter queue's messages until it is empty, the
// messages it held at the start have all been read, or Max were moved.
// Each copy's message id is remembered: SQS keeps a message's id when it
// moves it to a dead-letter queue, so a copy that fails again and comes
// back during the run is recognised, held and left there, and a consumer
// that keeps failing cannot keep the run going. It returns an error when
// it stopped early: a message's target cannot be told (a
// config.FieldError naming To), a target cannot be sent to, the queue
// cannot be read, or ctx was cancelled. Every message not moved stays in
// the dead-letter queue, visible again at the end.
func Run(ctx context.Context, cfg Config, api API, log *zap.Logger) (Report, error) {
	switch {
	case cfg.From.URL == "":
		return Report{}, &config.FieldError{Field: "From", Msg: "is required: the dead-letter queue to move messages from"}
	case cfg.To != nil && cfg.To.URL == cfg.From.URL:
		return Report{}, &config.FieldError{Field: "To", Msg: fmt.Sprintf("is %s, the queue messages are moved from: name another queue", cfg.From.Name())}
	case cfg.DryRun && cfg.DryRunOut == nil:
		return Report{}, &config.FieldError{Field: "DryRunOut", Msg: "is required with DryRun: where the lines that would move go"}
	}
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	cfg.QueueURL = cfg.From.URL
	start, err := sqsapi.DescribeQueue(ctx, api, cfg.From.URL)
	if err != nil {
		return Report{}, fmt.Errorf("read how many messages %s holds: %w", cfg.From.Name(), err)
	}
	atStart := start.Counts.Visible + start.Counts.InFlight + start.Counts.Delayed
	if atStart == 0 {
		return Report{End: receive.Empty, Left: start.Counts, ByTarget: map[string]int{}}, nil
	}
	var filter *Filter
	if cfg.Filter != "" {
		filter, _ = ParseFilter(cfg.Filter)
	}
	r, err := receive.New(cfg.Config, api, log, nil)
	if err != nil {
		return Report{}, err
	}
	if err := r.Start(ctx); err != nil {
		return Report{}, err
	}
	m := &mover{cfg: cfg, api: api, log: log, r: r, filter: filter,
		router: newRouter(api, cfg.From, cfg.To), senders: map[*target]*batch.Sender{},
		pending: map[*target]*pending{}, atStart: int(atStart),
		report: Report{AtStart: int(atStart), ByTarget: map[string]int{}},
		seed:   maphash.MakeSeed(), sent: map[uint64]struct{}{}}
	if cfg.Rate > 0 {
		m.limit = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, min(batch.MaxEntries, int(cfg.Rate))))
	}
	if cfg.DryRun {
		m.dry = line.NewWriter(cfg.DryRunOut)
	}
	err = m.run(ctx)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	for _, s := range m.senders {
		_ = s.Stop(cctx)
	}
	if cerr := r.Close(cctx); cerr != nil {
		log.Warn("the end of the redrive was cut short; messages not released stay invisible until their visibility timeout", zap.Error(cerr))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.report.End, m.report.Left = r.End()
	m.report.Deleted = r.Deleted()
	if m.report.AllRead {
		if q, derr := sqsapi.DescribeQueue(cctx, api, cfg.From.URL); derr == nil {
			m.report.Left = q.Counts
		}
	}
	if err == nil {
		err = m.fatal
	}
	if err == nil && m.report.End == receive.Failed {
		err = r.Err()
	}
	return m.report, err
}

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
