package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/tools/line"
	"github.com/sqsworker/sqsworker/internal/tools/load"
)

// The drain scenarios, measured from the same runs of the drain binary.
const (
	scenarioDrainThroughput = "drain-throughput"
	scenarioDrainRSS        = "drain-peak-rss"
)

// rssEvery is how often the drain's VmHWM is read while it runs.
const rssEvery = 20 * time.Millisecond

// rawDrainGoroutines is how many receive-and-delete loops the raw
// baseline of drain-throughput runs.
const rawDrainGoroutines = 8

// drain runs the drain binary over a queue of 10,000 and one of 100,000
// messages (256-byte bodies, 3 attributes each) to a file, and reports
// its msg/s beside a raw receive-and-delete loop over the same messages,
// and its peak RSS at both sizes: flat memory keeps the two close.
func (e *env) drain(ctx context.Context) error {
	sizes := []int{e.opts.count(10000, 20), e.opts.count(100000, 100)}
	if e.opts.RTT > 0 {
		for i := range sizes {
			sizes[i] /= 10 // a few hundred round trips a second: seconds, not minutes
		}
	}
	e.note("%s and %s run `worker drain --out FILE --max N` on a queue of exactly N messages (so the run ends at the N-th, without "+
		"waiting for the queue to prove empty) and time the process from start to exit; peak RSS is the process's VmHWM (/proc/PID/status), read every 20 ms until it exits. "+
		"The file is in the system's temporary directory and synced after each batch of up to 100 lines.", scenarioDrainThroughput, scenarioDrainRSS)
	rss := make([]float64, len(sizes))
	for i, n := range sizes {
		lines := loadLines(n, false)
		q, err := e.fillLines(ctx, "drain", lines)
		if err != nil {
			return err
		}
		e.progress("%s: worker drain of %d messages to a file", scenarioDrainThroughput, n)
		took, peak, err := e.drainBinary(ctx, q.URL, n)
		e.dropQueue(q.URL)
		if err != nil {
			return err
		}
		rss[i] = peak
		raw, err := e.fillLines(ctx, "drain-raw", lines)
		if err != nil {
			return err
		}
		e.progress("%s: raw receive-and-delete loop over %d messages, %d goroutines", scenarioDrainThroughput, n, rawDrainGoroutines)
		r, err := e.rawLoop(ctx, raw.URL, rawDrainGoroutines, n)
		e.dropQueue(raw.URL)
		if err != nil {
			return err
		}
		rate, rawRate := float64(n)/took.Seconds(), float64(n)/r.took.Seconds()
		e.add(scenarioDrainThroughput, fmt.Sprintf("drain of %s messages to a file: msg/s", thousands(float64(n))), rate, "msg/s", nil,
			fmt.Sprintf("raw receive-and-delete loop, %d goroutines, %s (ratio %.2f)", rawDrainGoroutines, format(rawRate, "msg/s"), rate/rawRate), rawRate,
			"256-byte bodies with 3 attributes; start to exit of the process")
	}
	for i, n := range sizes {
		limit := fmt.Sprintf("budget %d MiB beside the application it serves", footprintBudgetMiB)
		notes := "the drain binary, lines of 256-byte bodies with 3 attributes"
		if i > 0 {
			notes += fmt.Sprintf("; %.2f× its peak at %s messages (%.1f MiB)", rss[i]/rss[0], thousands(float64(sizes[0])), rss[0])
		}
		e.add(scenarioDrainRSS, fmt.Sprintf("peak RSS of drain, %s messages", thousands(float64(n))), rss[i], "MiB",
			atMost(footprintBudgetMiB), limit, footprintBudgetMiB, notes)
	}
	return nil
}

// fillLines creates a queue and sends lines to it with the load tool.
func (e *env) fillLines(ctx context.Context, prefix string, lines []line.Line) (sqstest.Queue, error) {
	q, err := e.createQueue(ctx, prefix, sqstest.QueueOptions{})
	if err != nil {
		return q, err
	}
	e.progress("%s: sending %d messages", prefix, len(lines))
	path := filepath.Join(e.tmp, prefix+"-in.jsonl")
	if err := writeLines(path, lines); err != nil {
		return q, err
	}
	defer func() { _ = os.Remove(path) }()
	f, err := os.Open(path)
	if err != nil {
		return q, err
	}
	defer func() { _ = f.Close() }()
	client, err := sqsapi.New(ctx, sqsapi.Options{EndpointURL: e.srv.Endpoint})
	if err != nil {
		return q, err
	}
	r, err := load.Run(ctx, load.Config{QueueURL: q.URL, Senders: 8}, client, f)
	if err == nil && !r.OK() {
		err = fmt.Errorf("load sent %d of %d lines", r.Sent, r.Lines)
	}
	return q, err
}

// drainBinary runs `worker drain --max n` on the queue into a file and
// returns how long the process ran and its peak RSS in MiB, once it
// checked that the file has n lines.
func (e *env) drainBinary(ctx context.Context, queueURL string, n int) (time.Duration, float64, error) {
	bin, err := e.workerBinary(ctx)
	if err != nil {
		return 0, 0, err
	}
	out := filepath.Join(e.tmp, "drained.jsonl")
	defer func() { _ = os.Remove(out) }()
	cmd := exec.CommandContext(ctx, bin, "drain", "--queue-url", queueURL, "--out", out, "--max", strconv.Itoa(n),
		"--wait-time", e.opts.WaitTime.String())
	cmd.Env = append(append(os.Environ(), e.srv.Env()...), "AWS_ENDPOINT_URL_SQS="+e.endpoint)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("start worker drain: %w", err)
	}
	// VmHWM, read until the exit: the peak of the drain's own memory.
	// (getrusage's maxrss would not do: it counts the forking parent's
	// memory, taken over until exec.)
	var peak float64
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(rssEvery)
		defer tick.Stop()
		for {
			if hwm, err := peakRSS(cmd.Process.Pid); err == nil {
				peak = max(peak, hwm)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err = cmd.Wait()
	took := time.Since(t0)
	close(done)
	<-watched
	msg := output.String()
	if err != nil {
		return 0, 0, fmt.Errorf("worker drain: %w: %s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return 0, 0, err
	}
	if lines := bytes.Count(b, []byte("\n")); lines != n {
		return 0, 0, fmt.Errorf("worker drain wrote %d lines, want %d: %s", lines, n, msg)
	}
	return took, peak, nil
}
