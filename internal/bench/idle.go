package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// idleBudgetPerMinute is the most receive requests an idle worker may send
// a minute: one long poll open, returning empty every wait time. The
// queue-depth reads are counted beside it, on their own interval.
const idleBudgetPerMinute = 4

// idleCost runs idle-cost: the worker binary with its default flags
// (wait time included) on an empty queue for IdleDuration, counting the
// SQS requests it sends (sqsworker_sqs_requests_total) from once it has
// started.
func (e *env) idleCost(ctx context.Context) error {
	q, err := e.fill(ctx, "idle", sqstest.QueueOptions{}, nil)
	if err != nil {
		return err
	}
	h, err := e.startHandler(ctx, 0)
	if err != nil {
		return err
	}
	defer h.stop()
	e.progress("%s: worker binary with default flags on an empty queue for %s", scenarioIdle, e.opts.IdleDuration)
	p, err := e.startBinary(ctx, "--queue-url", q.URL, "--handler", "http", "--http-url", h.URL,
		"--wait-time", config.DefaultWaitTime.String())
	if err != nil {
		return err
	}
	first, err := p.Scrape(ctx)
	var last sqstest.Metrics
	t0 := time.Now()
	if err == nil {
		t := time.NewTimer(e.opts.IdleDuration)
		select {
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.Stop()
	}
	took := time.Since(t0)
	if err == nil {
		last, err = p.Scrape(ctx)
	}
	// The queue is empty: the second signal's cancelled poll orphans
	// nothing, and the worker need not wait out its 20 s. The second is
	// sent once the first is seen: two at once may arrive as one.
	if serr := p.Signal(syscall.SIGTERM); err == nil {
		err = serr
	}
	if perr := sqstest.Poll(ctx, 10*time.Second, 10*time.Millisecond, "the worker to log the first signal", func() bool {
		return strings.Contains(p.Logs(), "stopping gracefully")
	}); err == nil {
		err = perr
	}
	if serr := p.Signal(syscall.SIGTERM); err == nil {
		err = serr
	}
	if code, werr := p.Wait(10 * time.Second); err == nil {
		err = werr
		if werr == nil && code != 0 {
			err = fmt.Errorf("worker exited with status %d: %s", code, p.LastLines(20))
		}
	}
	if err != nil {
		return errors.Join(err, p.stop(time.Second))
	}
	reqs := last.Value("sqsworker_sqs_requests_total") - first.Value("sqsworker_sqs_requests_total")
	receives := last.Value("sqsworker_sqs_requests_total", "action", "ReceiveMessage") - first.Value("sqsworker_sqs_requests_total", "action", "ReceiveMessage")
	perMinute := reqs / took.Minutes()
	floor := time.Minute.Seconds() / config.DefaultWaitTime.Seconds()
	detail := fmt.Sprintf("%.0f requests (%.0f receives) in %.1f s; %.0f polls open at the end; default flags (adaptive fetchers, wait time %s, queue-depth reads every %s)",
		reqs, receives, took.Seconds(), last.Value("sqsworker_receive_polls"), config.DefaultWaitTime, config.DefaultQueueStatsInterval)
	e.add(scenarioIdle, "receive requests per minute, idle (sqsworker_sqs_requests_total, ReceiveMessage)", receives/took.Minutes(), "req/min", atMost(idleBudgetPerMinute),
		fmt.Sprintf("one long poll of %s returning empty: %.0f a minute", config.DefaultWaitTime, floor), floor, detail)
	e.add(scenarioIdle, "all SQS requests per minute, idle, with the queue-depth reads", perMinute, "req/min", nil,
		fmt.Sprintf("%.0f receives + one GetQueueAttributes per queue every %s (--queue-stats-interval 0 turns them off)", floor, config.DefaultQueueStatsInterval),
		floor+time.Minute.Seconds()/config.DefaultQueueStatsInterval.Seconds(), detail)
	return nil
}
