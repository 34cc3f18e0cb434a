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
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/sqsworker/sqsworker/internal/batch"
	"github.com/sqsworker/sqsworker/internal/config"
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
