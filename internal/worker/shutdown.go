package worker

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// shutdown stops the parts in order, within one deadline. Senders stop
// before receivers: the fetchers first (polls already waiting are let
// return, and cancelled only once the queue looks idle, see
// cancelIdlePolls, or at the deadline: a cancelled poll orphans what SQS
// hands it in that instant), then the pool (buffered messages released,
// running handlers let finish until the handlers' deadline or StopAndCancel, then
// cancelled and, if they ignore it, released without them), then the
// final delete flush (on a context nothing cancels, until the deadline
// but for at least a moment), then, once the last polls are back, the
// lease table (heartbeats go on until here so leases stay valid), and
// last the queue-depth poller.
func (w *Worker) shutdown() {
	hardline := time.Now().Add(w.cfg.ShutdownTimeout)
	handlersCtx, cancelHandlers := context.WithDeadline(context.Background(), hardline.Add(-shutdownReserve(w.cfg.ShutdownTimeout)))
	defer cancelHandlers()
	pollsCtx, cancelPolls := context.WithDeadline(context.Background(), hardline)
	defer cancelPolls()
	flushCtx, cancelFlush := context.WithDeadline(context.Background(), later(hardline, time.Now().Add(2*time.Second)))
	defer cancelFlush()
	// StopAndCancel means now: handlers and waiting polls are cancelled,
	// and what is left of the shutdown keeps within forcedExit.
	go func() {
		select {
		case <-w.forcing:
			w.log.Warn("forced stop: cancelling running handlers and waiting polls; their messages are released")
			cancelHandlers()
			cancelPolls()
			time.AfterFunc(forcedExit, cancelFlush)
		case <-flushCtx.Done():
		}
	}()

	fetchStopped := make(chan error, 1)
	go func() { fetchStopped <- w.fetcher.Stop(pollsCtx) }()
	go w.cancelIdlePolls(time.Now())
	steps := []struct {
		name string
		stop func() error
	}{
		{"pool", func() error { return w.pool.Stop(handlersCtx) }},
		{"final delete flush", func() error { return w.deleter.Stop(flushCtx) }},
		{"receives", func() error { return <-fetchStopped }},
		{"downstream probes", func() error { return w.guard.Stop(flushCtx) }},
		{"lease table", func() error { return w.leases.Stop(flushCtx) }},
		{"queue stats", func() error { return w.depths.Stop(flushCtx) }},
	}
	for _, s := range steps {
		if err := s.stop(); err != nil {
			w.log.Warn("shutdown step cut short", zap.String("step", s.name), zap.Error(err))
		}
	}
	if left := w.leases.Len(); left > 0 {
		w.log.Warn("leases still held at exit; those messages stay invisible until their visibility timeout", zap.Int("leases", left))
	}
	st := w.metrics.Totals()
	fields := []zap.Field{zap.Float64("sqs_requests", st.SQSRequests), zap.Float64("received", st.Received),
		zap.Float64("succeeded", st.Succeeded), zap.Float64("failed", st.Failed)}
	if st.Received > 0 {
		fields = append(fields, zap.Time("last_message_received_at", w.fetcher.LastReceived()))
	}
	w.log.Info("worker stopped", fields...)
}

// cancelIdlePolls cancels the long polls still waiting once the queue
// looks idle, so that an idle worker stops in about idlePollGrace rather
// than the polls' wait time: no receive has brought a message for
// idlePollGrace since the stop began, and the worker holds no message it
// could still hand back (a released message wakes a waiting poll, which
// brings it back to be released again; a cancelled poll would take it
// away for a visibility timeout). What SQS hands a poll in the instant it
// is cancelled becomes visible again after its visibility timeout; the
// fetcher counts those polls. It returns once the fetchers have stopped.
func (w *Worker) cancelIdlePolls(stopped time.Time) {
	tick := time.NewTicker(idlePollGrace / 10)
	defer tick.Stop()
	for {
		select {
		case <-w.fetcher.Failed(): // every fetcher has stopped
			return
		case now := <-tick.C:
			if now.Sub(later(stopped, w.fetcher.LastReceived())) >= idlePollGrace && w.leases.Len() == 0 {
				w.fetcher.CancelWaitingPolls()
				return
			}
		}
	}
}

// idlePollGrace is how long the long polls still waiting at a stop are
// let run on an idle queue before they are cancelled.
const idlePollGrace = time.Second

// forcedExit bounds what is left of the shutdown after StopAndCancel.
const forcedExit = 1500 * time.Millisecond

// shutdownReserve is the end of the shutdown timeout kept for cancelling
// handlers, releasing messages and the last delete flush.
func shutdownReserve(timeout time.Duration) time.Duration {
	return min(timeout/4, 3*time.Second)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
