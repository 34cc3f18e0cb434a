package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/load"
)

// loadThroughput measures the load tool sending a file of lines (256-byte
// bodies, a string, a number and a binary attribute each) to a standard
// and to a FIFO queue, each beside a raw SendMessageBatch loop sending
// the same messages, already batched, with as many batches in flight.
func (e *env) loadThroughput(ctx context.Context) error {
	// The server is warmed up first, so that neither side pays for it.
	if _, err := e.rawSend(ctx, loadLines(e.opts.count(5000, 10), false), false, load.DefaultSenders); err != nil {
		return err
	}
	for _, fifo := range []bool{false, true} {
		n := e.opts.count(50000, 100)
		senders := load.DefaultSenders
		kind := "standard"
		if fifo {
			n, senders, kind = e.opts.count(10000, 100), 1, "FIFO"
		}
		if e.opts.RTT > 0 {
			n /= 5 // a few hundred round trips a second: seconds, not minutes
		}
		lines := loadLines(n, fifo)
		path := filepath.Join(e.tmp, "load.jsonl")
		if err := writeLines(path, lines); err != nil {
			return err
		}
		e.progress("%s: %s queue, %d lines, %d batches in flight", scenarioLoad, kind, n, senders)
		took, err := e.loadFile(ctx, path, fifo)
		if err != nil {
			return err
		}
		rawTook, err := e.rawSend(ctx, lines, fifo, senders)
		if err != nil {
			return err
		}
		rate, raw := float64(n)/took.Seconds(), float64(n)/rawTook.Seconds()
		e.add(scenarioLoad, fmt.Sprintf("load from a file into a %s queue: msg/s", kind), rate, "msg/s", nil,
			fmt.Sprintf("raw SendMessageBatch loop %s (ratio %.2f)", format(raw, "msg/s"), rate/raw), raw,
			fmt.Sprintf("%s lines of 256-byte bodies with 3 attributes, batches of 10, %d in flight", thousands(float64(n)), senders))
	}
	return nil
}

// loadLines are n lines as a drained queue would have them.
func loadLines(n int, fifo bool) []line.Line {
	out := make([]line.Line, n)
	for i := range out {
		id := strconv.Itoa(i)
		l := line.Line{
			MessageID: "m-" + id,
			Body:      id + ":" + strings.Repeat("b", 255-len(id)),
			MessageAttributes: map[string]line.Attribute{
				"kind":  {DataType: "String", StringValue: "order-created"},
				"total": {DataType: "Number", StringValue: id},
				"sig":   {DataType: "Binary", BinaryValue: []byte{1, 2, 3, 4}},
			},
		}
		if fifo {
			l.Attributes = map[string]string{"MessageGroupId": "g" + strconv.Itoa(i%16), "MessageDeduplicationId": "d" + id}
		}
		out[i] = l
	}
	return out
}

func writeLines(path string, lines []line.Line) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	b := bufio.NewWriter(f)
	w := line.NewWriter(b)
	for i := range lines {
		if err := w.Write(&lines[i]); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := b.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// loadFile runs the load tool on path into a new queue, as `worker load`
// does, and returns how long it took.
func (e *env) loadFile(ctx context.Context, path string, fifo bool) (time.Duration, error) {
	q, err := e.createQueue(ctx, "load", sqstest.QueueOptions{FIFO: fifo})
	if err != nil {
		return 0, err
	}
	defer e.dropQueue(q.URL)
	client, err := sqsapi.New(ctx, sqsapi.Options{EndpointURL: e.endpoint})
	if err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	t0 := time.Now()
	r, err := load.Run(ctx, load.Config{QueueURL: q.URL, FIFO: fifo}, client, f)
	took := time.Since(t0)
	if err == nil && !r.OK() {
		err = fmt.Errorf("load sent %d of %d lines", r.Sent, r.Lines)
	}
	return took, err
}

// rawSend is the baseline: the same messages, already in batches of ten,
// sent by senders goroutines as fast as they can.
func (e *env) rawSend(ctx context.Context, lines []line.Line, fifo bool, senders int) (time.Duration, error) {
	q, err := e.createQueue(ctx, "load-raw", sqstest.QueueOptions{FIFO: fifo})
	if err != nil {
		return 0, err
	}
	defer e.dropQueue(q.URL)
	client := sqstest.NewClient(e.endpoint)
	batches := make(chan []types.SendMessageBatchRequestEntry, senders)
	errc := make(chan error, senders)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range senders {
		wg.Go(func() {
			for entries := range batches {
				out, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.URL), Entries: entries})
				if err == nil && len(out.Failed) > 0 {
					err = fmt.Errorf("raw send: %s", sqsapi.EntryError(out.Failed[0]))
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	for start := 0; start < len(lines); start += 10 {
		entries := make([]types.SendMessageBatchRequestEntry, 0, 10)
		for i := start; i < min(start+10, len(lines)); i++ {
			entries = append(entries, lines[i].Entry(strconv.Itoa(i-start), fifo))
		}
		select {
		case batches <- entries:
		case err := <-errc:
			close(batches)
			wg.Wait()
			return 0, err
		}
	}
	close(batches)
	wg.Wait()
	took := time.Since(t0)
	close(errc)
	return took, <-errc
}
