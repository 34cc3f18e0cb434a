// Package stats reads a queue's health — its approximate counts, its
// redrive policy, its dead-letter queue's counts, and, for a dead-letter
// queue, the queues that feed it — and prints it for people or scripts.
package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// API is what reading stats needs from SQS.
type API interface {
	sqsapi.SourcesAPI
}

// Queue is one queue's part of Stats.
type Queue struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	ARN  string `json:"arn"`
	sqsapi.Counts
	// RedrivePolicy is the queue's dead-letter queue, nil without one.
	RedrivePolicy *sqsapi.RedrivePolicy `json:"redrive_policy"`
}

// Source is a queue whose redrive policy names the queue read.
type Source struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// Stats is one reading.
type Stats struct {
	Queue Queue `json:"queue"`
	// DeadLetterQueue is the queue's redrive policy's target, nil when it
	// has none.
	DeadLetterQueue *Queue `json:"dead_letter_queue"`
	// SourceQueues feed the queue, which is then a dead-letter queue;
	// empty otherwise.
	SourceQueues []Source `json:"source_queues"`
	// At is when it was read.
	At time.Time `json:"at"`
}

// Reader reads a queue's stats; it finds the dead-letter queue and the
// source queues once, and the counts at each Read.
type Reader struct {
	api     API
	url     string
	dlqURL  string
	sources []Source
	now     func() time.Time
}

// NewReader looks up the queue's dead-letter queue and source queues.
func NewReader(ctx context.Context, api API, q sqsapi.Queue) (*Reader, error) {
	r := &Reader{api: api, url: q.URL, sources: []Source{}, now: time.Now}
	if q.RedrivePolicy != nil {
		u, err := sqsapi.QueueURLOfARN(ctx, api, q.RedrivePolicy.DeadLetterTargetARN)
		if err != nil {
			return nil, fmt.Errorf("find the dead-letter queue of %s: %w", q.Name(), err)
		}
		r.dlqURL = u
	}
	urls, err := sqsapi.DeadLetterSources(ctx, api, q)
	if err != nil {
		return nil, err
	}
	for _, u := range urls {
		r.sources = append(r.sources, Source{Name: sqsapi.QueueName(u), URL: u})
	}
	return r, nil
}

// Read reads the counts of the queue and its dead-letter queue.
func (r *Reader) Read(ctx context.Context) (Stats, error) {
	q, err := r.describe(ctx, r.url)
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Queue: q, SourceQueues: r.sources, At: r.now().UTC()}
	if r.dlqURL != "" {
		dlq, err := r.describe(ctx, r.dlqURL)
		if err != nil {
			return Stats{}, err
		}
		s.DeadLetterQueue = &dlq
	}
	return s, nil
}

func (r *Reader) describe(ctx context.Context, url string) (Queue, error) {
	q, err := sqsapi.DescribeQueue(ctx, r.api, url)
	if err != nil {
		return Queue{}, fmt.Errorf("read the attributes of %s: %w", sqsapi.QueueName(url), err)
	}
	return Queue{Name: q.Name(), URL: q.URL, ARN: q.ARN, Counts: q.Counts, RedrivePolicy: q.RedrivePolicy}, nil
}

// Printer prints readings as a table, or as one JSON object per line.
// InPlace redraws the table over the last one (on a terminal).
type Printer struct {
	W       io.Writer
	JSON    bool
	InPlace bool
	// Header, when set, is printed above each table.
	Header func(Stats) string

	drawn int // lines of the last table, for InPlace
}

// Print prints one reading.
func (p *Printer) Print(s Stats) error {
	if p.JSON {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.W, "%s\n", b)
		return err
	}
	var b strings.Builder
	if p.Header != nil {
		b.WriteString(p.Header(s) + "\n")
	}
	rows := [][]string{{"queue", "visible", "in flight", "delayed", ""}}
	row := func(q Queue, note string) {
		rows = append(rows, []string{q.Name, strconv.FormatInt(q.Visible, 10), strconv.FormatInt(q.InFlight, 10),
			strconv.FormatInt(q.Delayed, 10), note})
	}
	var notes []string
	if rp := s.Queue.RedrivePolicy; rp != nil {
		notes = append(notes, fmt.Sprintf("dead-letter queue %s after %d receives", sqsapi.QueueName(rp.DeadLetterTargetARN), rp.MaxReceiveCount))
	}
	if len(s.SourceQueues) > 0 {
		names := make([]string, len(s.SourceQueues))
		for i, src := range s.SourceQueues {
			names[i] = src.Name
		}
		notes = append(notes, "dead-letter queue of "+strings.Join(names, ", "))
	}
	row(s.Queue, strings.Join(notes, "; "))
	if s.DeadLetterQueue != nil {
		row(*s.DeadLetterQueue, "dead-letter queue of "+s.Queue.Name)
	}
	table(&b, rows)
	out := b.String()
	if p.InPlace && p.drawn > 0 {
		out = fmt.Sprintf("\x1b[%dA\x1b[J", p.drawn) + out // up over the last table, clear to the end
	}
	p.drawn = strings.Count(b.String(), "\n")
	_, err := io.WriteString(p.W, out)
	return err
}

// table writes rows in columns: the first left-aligned, the numbers
// right-aligned, the last (a note) as it is.
func table(b *strings.Builder, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		fmt.Fprintf(b, "%-*s", widths[0], r[0])
		for i := 1; i < len(r)-1; i++ {
			fmt.Fprintf(b, "  %*s", widths[i], r[i])
		}
		if note := r[len(r)-1]; note != "" {
			b.WriteString("  " + note)
		}
		b.WriteString("\n")
	}
}
