package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// integrityBodySize is each message's size. Ten such messages make a
// receive's response longer than the transport's 4 KiB read buffer, so a
// connection closed under a response is seen, not absorbed by the buffer.
const integrityBodySize = 1024

// integrityResult is one run of the receive-integrity scenario.
type integrityResult struct {
	// failed ReceiveMessage attempts, receives counted as orphaned, and
	// failed attempts of any action (the SDK retries the others).
	failed, orphaned, failedAny float64
	// whole and steady are arrivals at the handler per second: over the
	// whole run (until the last message first arrived, took after
	// "worker started") and between the 10% and 90% marks.
	whole, steady float64
	took          time.Duration
	// lastDone is when the last message was first answered with success.
	lastDone time.Duration
}

// receiveIntegrity repeats IntegrityRuns times: the worker binary with 8
// fetchers and concurrency 200 consumes 20,000 messages through an HTTP
// handler of lognormal time (median 50ms, σ=1). A receive whose response
// is lost leaves its messages invisible for a whole visibility timeout,
// which shows as a failed receive and as a whole-run rate of arrivals at
// the handler far below the steady one.
func (e *env) receiveIntegrity(ctx context.Context) error {
	const fetchers, concurrency = 8, 200
	n := e.opts.count(20000, 20)
	runs := e.opts.IntegrityRuns
	e.note("%s runs the worker binary %d times (%s msgs of 1 KiB each, %d fetchers, concurrency %d, HTTP handler of lognormal time, median 50ms, σ=1, seeds %d…%d); "+
		"it counts messages as they first reach the handler: whole-run msg/s from \"worker started\" until the last one did, steady msg/s between the 10%% and 90%% marks "+
		"(the rate of first successes would measure the handler times' own tail, which holds even a consumer with no overhead well below its steady rate: the worst run's row says by how much), "+
		"and a receive that loses its response holds its messages back by a whole visibility timeout; "+
		"failed receives are the worker's ReceiveMessage attempts with outcome error.",
		scenarioIntegrity, runs, thousands(float64(n)), fetchers, concurrency, e.opts.Seed, e.opts.Seed+uint64(runs)-1)
	// Every run is judged, but the report keeps two rows: the failed
	// receives of all runs, and the worst run's rate ratio (with its seed,
	// to rerun it); each run's figures go to the progress lines.
	var failed, orphaned, failedAny float64
	var failedRuns int
	var worst integrityResult
	var worstSeed uint64
	var worstTail float64
	ratios := make([]float64, 0, runs)
	for r := range runs {
		seed := e.opts.Seed + uint64(r)
		e.progress("%s run %d/%d: %d messages, seed %d", scenarioIntegrity, r+1, runs, n, seed)
		res, err := e.integrityRun(ctx, n, seed, fetchers, concurrency)
		if err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
		if res.failed > 0 {
			failedRuns++
		}
		failed, orphaned, failedAny = failed+res.failed, orphaned+res.orphaned, failedAny+res.failedAny
		ratio := res.whole / res.steady
		ratios = append(ratios, ratio)
		tail := tailRatio(n, seed, concurrency)
		e.progress("%s run %d/%d: failed receives %.0f, whole-run ÷ steady msg/s %.3f (whole run %s in %.2f s, steady %s; zero-overhead consumer %.3f)",
			scenarioIntegrity, r+1, runs, res.failed, ratio, format(res.whole, "msg/s"), res.took.Seconds(), format(res.steady, "msg/s"), tail)
		if r == 0 || ratio < worst.whole/worst.steady {
			worst, worstSeed, worstTail = res, seed, tail
		}
	}
	slices.Sort(ratios)
	e.add(scenarioIntegrity, fmt.Sprintf("failed receives, all %d runs", runs), failed, "count", exactly(0),
		"0 (every receive's response read)", 0,
		fmt.Sprintf("%d of %d runs had one; %.0f counted as orphaned, %.0f failed SQS request attempts of any action; seeds %d…%d",
			failedRuns, runs, orphaned, failedAny, e.opts.Seed, e.opts.Seed+uint64(runs)-1))
	e.add(scenarioIntegrity, fmt.Sprintf("whole-run ÷ steady msg/s, worst of %d runs", runs), ratios[0], "ratio", atLeast(0.9),
		fmt.Sprintf("steady %s (worst run)", format(worst.steady, "msg/s")), worst.steady,
		fmt.Sprintf("runs %.3f–%.3f, median %.3f; worst: seed %d, whole run %s in %.2f s, last success at %.2f s, where the zero-overhead consumer's whole-run ÷ steady rate of successes is %.3f",
			ratios[0], ratios[len(ratios)-1], ratios[len(ratios)/2], worstSeed, format(worst.whole, "msg/s"), worst.took.Seconds(), worst.lastDone.Seconds(), worstTail))
	return nil
}

// tailRatio is the zero-overhead consumer's whole-run ÷ steady rate of
// successes over message times of seed, with slots handlers.
func tailRatio(n int, seed uint64, slots int) float64 {
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = handlerTime(seed, i)
	}
	sim := simulate(d, slots)
	if sim.steadyRate == 0 {
		return 0
	}
	return float64(n) / sim.makespan.Seconds() / sim.steadyRate
}

func (e *env) integrityRun(ctx context.Context, n int, seed uint64, fetchers, concurrency int) (res integrityResult, err error) {
	bodies := indexBodies(n)
	for i, b := range bodies {
		bodies[i] = b + ":" + strings.Repeat("x", integrityBodySize-len(b)-1)
	}
	q, err := e.fill(ctx, "integrity", sqstest.QueueOptions{}, bodies)
	if err != nil {
		return res, err
	}
	h := newTailHandler(n, seed)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		if serr := <-serveErr; err == nil && !errors.Is(serr, http.ErrServerClosed) {
			err = serr
		}
	}()
	p, err := e.startBinary(ctx, "--queue-url", q.URL, "--handler", "http", "--http-url", "http://"+ln.Addr().String()+"/",
		"--concurrency", strconv.Itoa(concurrency), "--fetchers", strconv.Itoa(fetchers))
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	err = waitClosed(ctx, h.all, 10*time.Minute, "every message handled once")
	var m sqstest.Metrics
	if err == nil {
		m, err = p.waitDeleted(ctx, n)
	}
	if serr := p.stop(e.opts.WaitTime + time.Minute); err == nil {
		err = serr
	}
	if err != nil {
		return res, err
	}
	t10, t90, t100 := h.at(0), h.at(1), h.at(2)
	res.took = t100.Sub(t0)
	res.lastDone = time.Unix(0, h.lastDoneNano.Load()).Sub(t0)
	res.whole = float64(n) / res.took.Seconds()
	res.steady = res.whole // too few messages for a window
	if w := t90.Sub(t10); w > 0 {
		res.steady = float64(h.marks[1]-h.marks[0]) / w.Seconds()
	}
	res.failed = m.Value("sqsworker_sqs_requests_total", "action", "ReceiveMessage", "outcome", "error")
	res.orphaned = m.Value("sqsworker_receives_orphaned_total")
	res.failedAny = m.Value("sqsworker_sqs_requests_total", "outcome", "error")
	return res, nil
}

// tailHandler is the HTTP handler the worker posts to: it holds message i
// (its body) for handlerTime(seed, i), notes when the first request for
// the 10%, 90% and 100% mark of distinct messages arrived, and closes all
// once every message was answered with success.
type tailHandler struct {
	seed            uint64
	arrived, done   []atomic.Bool
	nArrived, nDone atomic.Int64
	marks           [3]int64
	atNano          [3]atomic.Int64
	lastDoneNano    atomic.Int64
	all             chan struct{}
}

func newTailHandler(n int, seed uint64) *tailHandler {
	return &tailHandler{seed: seed, arrived: make([]atomic.Bool, n), done: make([]atomic.Bool, n), all: make(chan struct{}),
		marks: [3]int64{max(1, int64(n)/10), max(1, int64(n)*9/10), int64(n)}}
}

// at is when the k-th mark of first arrivals was reached.
func (h *tailHandler) at(k int) time.Time { return time.Unix(0, h.atNano[k].Load()) }

func (h *tailHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	index, _, _ := strings.Cut(string(body), ":")
	i, aerr := strconv.Atoi(index)
	if err != nil || aerr != nil || i < 0 || i >= len(h.done) {
		http.Error(w, fmt.Sprintf("unexpected body %q", body), http.StatusBadRequest)
		return
	}
	if !h.arrived[i].Swap(true) {
		c := h.nArrived.Add(1)
		for k, mark := range h.marks {
			if c == mark {
				h.atNano[k].Store(time.Now().UnixNano())
			}
		}
	}
	t := time.NewTimer(handlerTime(h.seed, i))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(http.StatusOK)
	if !h.done[i].Swap(true) && h.nDone.Add(1) == int64(len(h.done)) {
		h.lastDoneNano.Store(time.Now().UnixNano())
		close(h.all)
	}
}
