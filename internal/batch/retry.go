package batch

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/backoff"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// send makes j's call, and again for what may still succeed, settling
// every entry exactly once.
func (s *Sender) send(j job) {
	entries := j.entries
	delay := firstBackoff
	for attempt := 1; ; attempt++ {
		entries = s.live(&j, entries)
		if len(entries) == 0 {
			return
		}
		if err := j.ctx.Err(); err != nil {
			s.abandon(&j, entries, err)
			return
		}
		sent := s.cfg.Now()
		ctx, cancel := context.WithTimeout(j.ctx, s.cfg.RequestTimeout)
		applied, failed, err := j.call(ctx, entries)
		cancel()
		var retry []Entry
		if err != nil {
			if !s.cfg.RetryAllErrors && !sqsapi.IsTransient(err) {
				s.abandon(&j, entries, err)
				return
			}
			retry = entries
		} else {
			retry = s.settle(&j, entries, sent, applied, failed)
			if len(retry) > 0 {
				err = fmt.Errorf("%d entries failed transiently", len(retry))
			}
		}
		if len(retry) == 0 {
			return
		}
		if s.cfg.Attempts != UnlimitedAttempts && attempt >= s.cfg.Attempts {
			s.log.Warn(fmt.Sprintf("%s %d messages in %s failed %d times; giving up", s.cfg.Action, len(retry), s.queue(), attempt),
				zap.Error(err))
			s.abandon(&j, retry, err)
			return
		}
		wait := backoff.Jitter(delay)
		s.log.Info(fmt.Sprintf("%s %d messages in %s failed (will retry in %s)", s.cfg.Action, len(retry), s.queue(), wait.Round(time.Millisecond)),
			zap.Int("attempt", attempt), zap.Error(err))
		if !backoff.Sleep(j.ctx, wait) {
			s.abandon(&j, retry, j.ctx.Err())
			return
		}
		delay = min(2*delay, maxBackoff)
		entries = retry
	}
}

// settle settles the entries SQS applied or refused for good and returns
// those to send again: transient failures, and any entry SQS did not
// mention at all (dropping it could leave a handled message undeleted).
func (s *Sender) settle(j *job, entries []Entry, sent time.Time, applied []string, failed []types.BatchResultErrorEntry) []Entry {
	seen := make([]bool, len(entries))
	for _, id := range applied {
		i, ok := index(id, len(entries))
		if !ok || seen[i] {
			continue
		}
		seen[i] = true
		s.finish(j, entries[i], Result{Outcome: Applied, SentAt: sent})
	}
	var retry []Entry
	for _, f := range failed {
		i, ok := index(aws.ToString(f.Id), len(entries))
		if !ok || seen[i] {
			continue
		}
		seen[i] = true
		if sqsapi.IsEntryTransient(f) {
			retry = append(retry, entries[i])
			continue
		}
		s.finish(j, entries[i], Result{Outcome: Refused, Code: sqsapi.EntryCode(f), Detail: sqsapi.EntryError(f)})
	}
	for i := range entries {
		if !seen[i] {
			retry = append(retry, entries[i])
		}
	}
	return retry
}

// live drops, as Skipped, the entries whose receipt handle may no longer
// be used: never act on a stale handle, the message may be someone else's.
func (s *Sender) live(j *job, entries []Entry) []Entry {
	if s.cfg.Live == nil {
		return entries
	}
	var kept []Entry // a new slice only once one is dropped: entries may be the caller's
	for i, e := range entries {
		if s.cfg.Live(e.Msg) {
			if kept != nil {
				kept = append(kept, e)
			}
			continue
		}
		if kept == nil {
			kept = append(make([]Entry, 0, len(entries)-1), entries[:i]...)
		}
		s.finish(j, e, Result{Outcome: Skipped})
	}
	if kept == nil {
		return entries
	}
	return kept
}

func (s *Sender) abandon(j *job, entries []Entry, err error) {
	for _, e := range entries {
		s.finish(j, e, Result{Outcome: Abandoned, Err: err})
	}
}

func (s *Sender) queue() string { return path.Base(s.cfg.QueueURL) }
