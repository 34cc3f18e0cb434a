package receive

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// quietSlack is added to the wait time before an empty poll counts: a
// poll that returns empty that long after the last message arrived began
// after it, and waited its whole wait for nothing.
const quietSlack = 500 * time.Millisecond

// countsTimeout bounds one GetQueueAttributes call of the watch.
const countsTimeout = 10 * time.Second

// watch ends receiving when the queue is empty, when MaxMessages were
// received, when the queue cannot be received from, or at StopReceiving;
// then it stops the fetcher, which closes Messages once its polls are
// back.
//
// Empty takes two witnesses. One empty receive proves nothing: several
// polls waiting together may all be woken by one message and come back
// empty early, and a poll that began before the last message may end
// just after it. So the long polls count only once a whole wait (plus
// slack) passed with no message, and one more came back empty after
// that: that poll began after the last message and found nothing. Then
// the queue's own counts must agree: nothing visible or delayed, and no
// more in flight than this run holds (the rest is someone else's, and may
// come back). If they do not, the watch waits for the next empty poll and
// asks again.
func (r *Receiver) watch() {
	defer close(r.watchDone)
	tick := time.NewTicker(max(r.cfg.WaitTime/8, 50*time.Millisecond))
	defer tick.Stop()
	lastMsg := r.fetcher.LastReceived()
	baseline := -1.0 // empty receives counted once the queue was quiet for a whole wait
	for {
		select {
		case <-r.stopWatch:
			if !r.fetcherEnded() {
				r.ended(Stopped, sqsapi.Counts{})
			}
		case <-r.fetcher.Failed():
			r.fetcherEnded()
		case <-tick.C:
			if lr := r.fetcher.LastReceived(); !lr.Equal(lastMsg) {
				lastMsg, baseline = lr, -1
				continue
			}
			if time.Since(lastMsg) < r.cfg.WaitTime+quietSlack {
				continue
			}
			empties := metrics.Sum(r.metrics.ReceiveEmpty)
			if baseline < 0 || empties <= baseline {
				baseline = max(baseline, empties)
				continue
			}
			end, left, ok := r.empty()
			if !ok {
				baseline = empties // ask again after the next empty poll
				continue
			}
			r.ended(end, left)
		}
		break
	}
	// Polls under way return within the wait time; what they bring is
	// released. Nothing cancels this: a cancelled poll would orphan what
	// SQS hands it.
	_ = r.fetcher.Stop(context.Background())
}

// fetcherEnded records why the fetchers ended on their own, if they
// did: the queue cannot be received from, or MaxMessages were received.
func (r *Receiver) fetcherEnded() bool {
	select {
	case <-r.fetcher.Failed():
	default:
		return false
	}
	if r.fetcher.Err() != nil {
		r.ended(Failed, sqsapi.Counts{})
	} else {
		r.ended(Limit, sqsapi.Counts{})
	}
	return true
}

// empty asks the queue's counts whether the queue is empty.
func (r *Receiver) empty() (End, sqsapi.Counts, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), countsTimeout)
	defer cancel()
	q, err := sqsapi.DescribeQueue(ctx, r.api, r.cfg.QueueURL)
	if err != nil {
		r.log.Warn("cannot read the queue's counts to tell whether it is empty; will ask again", zap.Error(err))
		return Receiving, sqsapi.Counts{}, false
	}
	c := q.Counts
	held := int64(r.leases.Len())
	switch {
	case c.InFlight > held || c.Delayed > 0:
		return Receiving, c, false
	case c.Visible == 0:
		return Empty, c, true
	case r.cfg.FIFO && held > 0 && int64(r.Held()) == held:
		// Every lease left is a hold: nothing this run will settle
		// unblocks the groups the visible messages wait in.
		return Blocked, c, true
	}
	return Receiving, c, false
}
