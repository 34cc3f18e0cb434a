package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a Call that answers with answer and records every call.
type recorder struct {
	mu     sync.Mutex
	calls  [][]string // message ids per call
	answer func(call int, entries []Entry) ([]string, []types.BatchResultErrorEntry, error)
}

func (r *recorder) call(_ context.Context, entries []Entry) ([]string, []types.BatchResultErrorEntry, error) {
	r.mu.Lock()
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.Msg.ID
	}
	r.calls = append(r.calls, ids)
	n := len(r.calls)
	r.mu.Unlock()
	if r.answer == nil {
		return applyAll(entries), nil, nil
	}
	return r.answer(n, entries)
}

func (r *recorder) snapshot() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.calls...)
}

func applyAll(entries []Entry) []string {
	ids := make([]string, len(entries))
	for i := range entries {
		ids[i] = ID(i)
	}
	return ids
}

// results collects what each entry became.
type results struct {
	mu  sync.Mutex
	got map[string][]Outcome
}

func (r *results) done(e Entry, res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]Outcome{}
	}
	r.got[e.Msg.ID] = append(r.got[e.Msg.ID], res.Outcome)
}

func (r *results) of(id string) []Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Outcome(nil), r.got[id]...)
}

func entries(n int, res *results) []Entry {
	out := make([]Entry, n)
	for i := range out {
		id := fmt.Sprintf("m-%d", i)
		out[i] = Entry{Msg: &message.Message{ID: id, ReceiptHandle: "h-" + id}, Done: res.done}
	}
	return out
}

func newSender(t *testing.T, cfg Config, r *recorder) *Sender {
	t.Helper()
	cfg.Action, cfg.QueueURL = "test", "https://sqs.eu-west-1.amazonaws.com/1/q"
	s := NewSender(cfg, r.call, zap.NewNop())
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func throttled() error {
	return &smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down", Fault: smithy.FaultClient}
}

func failed(id, code string, senderFault bool) types.BatchResultErrorEntry {
	return types.BatchResultErrorEntry{Id: aws.String(id), Code: aws.String(code), SenderFault: senderFault}
}

func TestSendSplitsIntoBatchesOfTen(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var res results
	s := newSender(t, Config{}, rec)
	s.Send(t.Context(), entries(25, &res))
	calls := rec.snapshot()
	if len(calls) != 3 {
		t.Fatalf("%d calls for 25 entries; want 3", len(calls))
	}
	total := 0
	for _, c := range calls {
		if len(c) > MaxEntries {
			t.Errorf("a call of %d entries; want at most %d", len(c), MaxEntries)
		}
		total += len(c)
	}
	if total != 25 {
		t.Errorf("%d entries sent; want 25", total)
	}
	for i := range 25 {
		if got := res.of(fmt.Sprintf("m-%d", i)); len(got) != 1 || got[0] != Applied {
			t.Errorf("m-%d settled %v; want [Applied]", i, got)
		}
	}
}

func TestSendSettlesEveryEntryOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      Config
		answer   func(call int, entries []Entry) ([]string, []types.BatchResultErrorEntry, error)
		want     map[string]Outcome
		wantCall int
	}{
		{
			name: "transient entries are retried",
			answer: func(call int, es []Entry) ([]string, []types.BatchResultErrorEntry, error) {
				if call == 1 {
					return []string{"0"}, []types.BatchResultErrorEntry{failed("1", "InternalError", false)}, nil
				}
				return applyAll(es), nil, nil
			},
			want:     map[string]Outcome{"m-0": Applied, "m-1": Applied},
			wantCall: 2,
		},
		{
			name: "an entry SQS does not mention is retried",
			answer: func(call int, es []Entry) ([]string, []types.BatchResultErrorEntry, error) {
				if call == 1 {
					return []string{"0"}, nil, nil
				}
				return applyAll(es), nil, nil
			},
			want:     map[string]Outcome{"m-0": Applied, "m-1": Applied},
			wantCall: 2,
		},
		{
			name: "a refused entry is settled at once",
			answer: func(int, []Entry) ([]string, []types.BatchResultErrorEntry, error) {
				return []string{"1"}, []types.BatchResultErrorEntry{failed("0", "ReceiptHandleIsInvalid", true)}, nil
			},
			want:     map[string]Outcome{"m-0": Refused, "m-1": Applied},
			wantCall: 1,
		},
		{
			name: "throttled calls are retried",
			answer: func(call int, es []Entry) ([]string, []types.BatchResultErrorEntry, error) {
				if call < 3 {
					return nil, nil, throttled()
				}
				return applyAll(es), nil, nil
			},
			want:     map[string]Outcome{"m-0": Applied, "m-1": Applied},
			wantCall: 3,
		},
		{
			name: "a call that fails for good is abandoned",
			answer: func(int, []Entry) ([]string, []types.BatchResultErrorEntry, error) {
				return nil, nil, &smithy.GenericAPIError{Code: "AccessDenied", Fault: smithy.FaultClient}
			},
			want:     map[string]Outcome{"m-0": Abandoned, "m-1": Abandoned},
			wantCall: 1,
		},
		{
			name: "RetryAllErrors retries it",
			cfg:  Config{RetryAllErrors: true},
			answer: func(call int, es []Entry) ([]string, []types.BatchResultErrorEntry, error) {
				if call == 1 {
					return nil, nil, errors.New("expired credentials")
				}
				return applyAll(es), nil, nil
			},
			want:     map[string]Outcome{"m-0": Applied, "m-1": Applied},
			wantCall: 2,
		},
		{
			name: "attempts run out",
			cfg:  Config{Attempts: 2},
			answer: func(int, []Entry) ([]string, []types.BatchResultErrorEntry, error) {
				return nil, nil, throttled()
			},
			want:     map[string]Outcome{"m-0": Abandoned, "m-1": Abandoned},
			wantCall: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{answer: tt.answer}
			var res results
			s := newSender(t, tt.cfg, rec)
			s.Send(t.Context(), entries(2, &res))
			for id, want := range tt.want {
				if got := res.of(id); len(got) != 1 || got[0] != want {
					t.Errorf("%s settled %v; want [%v]", id, got, want)
				}
			}
			if got := len(rec.snapshot()); got != tt.wantCall {
				t.Errorf("%d calls; want %d", got, tt.wantCall)
			}
		})
	}
}

func TestLiveSkipsDeadEntries(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var res results
	s := newSender(t, Config{Live: func(m *message.Message) bool { return m.ID != "m-1" }}, rec)
	s.Send(t.Context(), entries(3, &res))
	if got := res.of("m-1"); len(got) != 1 || got[0] != Skipped {
		t.Errorf("m-1 settled %v; want [Skipped]", got)
	}
	if calls := rec.snapshot(); len(calls) != 1 || len(calls[0]) != 2 {
		t.Errorf("calls %v; want one call of the 2 live entries", calls)
	}
}

func TestAddCoalescesAndSupersedes(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var res results
	s := newSender(t, Config{FlushInterval: time.Hour}, rec)
	es := entries(12, &res)
	newer := Entry{Msg: &message.Message{ID: "m-11", ReceiptHandle: "newer"}, Done: res.done}
	for _, e := range append(es, newer) {
		if err := s.Add(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	calls := rec.snapshot() // the two calls run concurrently, in either order
	if len(calls) != 2 || len(calls[0])+len(calls[1]) != 12 || (len(calls[0]) != 10 && len(calls[1]) != 10) {
		t.Errorf("calls %v; want one full call of 10 and the rest flushed by Stop", calls)
	}
	// The older entry of m-11 gave way to the newer one in the same call.
	if got := res.of("m-11"); len(got) != 2 || got[0] != Superseded || got[1] != Applied {
		t.Errorf("m-11 settled %v; want [Superseded Applied]", got)
	}
	if n, blocking := s.Backlog(); n != 0 || blocking {
		t.Errorf("backlog %d (blocking %v) after Stop; want 0", n, blocking)
	}
}

// TestPartialBatchWaitsWhileEverySenderIsBusy: a batch whose flush
// interval passed while no sender was free keeps filling, rather than
// queue a call of one entry behind the busy ones.
func TestPartialBatchWaitsWhileEverySenderIsBusy(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rec := &recorder{answer: func(call int, entries []Entry) ([]string, []types.BatchResultErrorEntry, error) {
		if call == 1 {
			<-release
		}
		return applyAll(entries), nil, nil
	}}
	var res results
	s := newSender(t, Config{FlushInterval: time.Millisecond, MaxInFlight: 1}, rec)
	es := entries(11, &res)
	if err := s.Add(t.Context(), es[0]); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the first entry's call in flight", func() bool { return len(rec.snapshot()) == 1 })
	for i, e := range es[1:] {
		if err := s.Add(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Its flush interval passes with the only sender busy: the
			// flush is put off, not sent.
			s.mu.Lock()
			due := s.flushAt
			s.mu.Unlock()
			testkit.Eventually(t, 10*time.Second, "the partial batch's flush put off", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.flushAt.After(due)
			})
		}
	}
	close(release)
	testkit.Eventually(t, 10*time.Second, "every entry applied", func() bool {
		n, _ := s.Backlog()
		return n == 0
	})
	if calls := rec.snapshot(); len(calls) != 2 || len(calls[1]) != 10 {
		t.Errorf("calls %v; want the first entry alone, then one call of the other ten", calls)
	}
}

func TestStopBeforeStartSendsWhatWasAdded(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var res results
	s := NewSender(Config{Action: "test"}, rec.call, zap.NewNop())
	for _, e := range entries(3, &res) {
		if err := s.Add(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if err := s.Stop(t.Context()); err != nil {
			t.Errorf("Stop #%d = %v; want nil", i+1, err)
		}
	}
	if err := s.Start(t.Context()); err == nil {
		t.Error("Start after Stop = nil; want an error")
	}
	for i := range 3 {
		if got := res.of(fmt.Sprintf("m-%d", i)); len(got) != 1 || got[0] != Applied {
			t.Errorf("m-%d settled %v; want [Applied]", i, got)
		}
	}
	// After Stop, Send runs on the caller's goroutine; Add abandons.
	var late results
	s.Send(t.Context(), entries(1, &late))
	if got := late.of("m-0"); len(got) != 1 || got[0] != Applied {
		t.Errorf("Send after Stop settled %v; want [Applied]", got)
	}
	_ = s.Add(t.Context(), entries(1, &late)[0])
	if got := late.of("m-0"); len(got) != 2 || got[1] != Abandoned {
		t.Errorf("Add after Stop settled %v; want Abandoned", got)
	}
}

func TestStopDeadlineAbandons(t *testing.T) {
	t.Parallel()
	rec := &recorder{answer: func(int, []Entry) ([]string, []types.BatchResultErrorEntry, error) {
		return nil, nil, throttled()
	}}
	var res results
	s := newSender(t, Config{Attempts: UnlimitedAttempts, FlushInterval: time.Millisecond}, rec)
	if err := s.Add(t.Context(), entries(1, &res)[0]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop = %v; want the deadline", err)
	}
	if got := res.of("m-0"); len(got) != 1 || got[0] != Abandoned {
		t.Errorf("m-0 settled %v; want [Abandoned]", got)
	}
}
