package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// throughputMessages is the message count of noop-throughput and binary-noop.
func (e *env) throughputMessages() int {
	if e.opts.ThroughputMessages > 0 {
		return e.opts.ThroughputMessages
	}
	return e.opts.count(50000, 20)
}

// throughput runs noop-throughput: the worker, its polls pinned, against a
// raw SDK loop with as many goroutines, each over twice the scenario's
// message count. The messages are taken in rounds that alternate worker
// and raw loop, each on a fresh queue, so that both see the same server:
// run one after the other, with the server sharing the machine's cores,
// their rates drift apart by more than the 5% the comparison is about.
// Rounds are long (12,500 messages by default) because a worker's round
// ends with its last delete batch waiting out the flush interval, which
// in a round of a few thousand messages weighs a few percent of the time
// without being a matter of throughput.
func (e *env) throughput(ctx context.Context) error {
	n := 2 * e.throughputMessages()
	if want := 2 * e.opts.count(50000, 20); n != want {
		e.note("%s, %s and %s consume %s messages instead of %s (--throughput-messages), to keep the run short.",
			scenarioThroughput, scenarioRequests, scenarioBinary, thousands(float64(n)), thousands(float64(want)))
	}
	if err := e.warmUp(ctx); err != nil {
		return err
	}
	rounds := max(1, min(e.opts.ThroughputRounds, n/2000))
	var wTook, rTook time.Duration
	var wUse, rUse usage
	var rawReqs float64
	reqs := map[string]float64{}
	var ratios []float64
	pinned := func(c *sqsworker.Config) { c.Fetchers = e.pinned() }
	for r := range rounds {
		m := n / rounds
		if r == rounds-1 {
			m = n - m*(rounds-1)
		}
		var wt, rt time.Duration
		worker := func() error {
			took, rq, use, err := e.throughputWorker(ctx, scenarioThroughput, m, r == 0, pinned)
			wt, wTook, wUse = took, wTook+took, wUse.add(use)
			for a, v := range rq {
				reqs[a] += v
			}
			return err
		}
		rawRound := func() error {
			q, err := e.fill(ctx, "throughput-raw", sqstest.QueueOptions{}, indexBodies(m))
			if err != nil {
				return err
			}
			e.progress("%s round %d/%d: raw SDK loop consumes %d messages with %d goroutines", scenarioThroughput, r+1, rounds, m, e.pinned())
			res, err := e.rawLoop(ctx, q.URL, e.pinned(), m)
			rt, rTook, rawReqs, rUse = res.took, rTook+res.took, rawReqs+res.requests, rUse.add(res.usage)
			return err
		}
		if err := alternate(r, worker, rawRound); err != nil {
			return err
		}
		e.dropQueues()
		ratios = append(ratios, rt.Seconds()/wt.Seconds())
		e.progress("%s round %d/%d: worker %s, raw loop %s", scenarioThroughput, r+1, rounds, format(float64(m)/wt.Seconds(), "msg/s"), format(float64(m)/rt.Seconds(), "msg/s"))
	}

	rate := float64(n) / wTook.Seconds()
	perMsg := sum(reqs) / float64(n)
	setting := fmt.Sprintf("%s msgs in %d rounds, %d fetchers, concurrency %d", thousands(float64(n)), rounds, e.pinned(), e.opts.Concurrency)
	rawRate := float64(n) / rTook.Seconds()
	e.noop.rate, e.noop.pinnedPerMsg, e.noop.rawPerMsg = rate, perMsg, rawReqs/float64(n)
	slices.Sort(ratios)
	e.add(scenarioThroughput, "throughput: public API, no-op Go handler ÷ raw SDK loop", rate/rawRate, "ratio", atLeast(0.95),
		fmt.Sprintf("raw loop %s (%d goroutines: receive 10 with every attribute → delete batch)", format(rawRate, "msg/s"), e.pinned()),
		rawRate, fmt.Sprintf("worker %s; rounds %.2f–%.2f; %s", format(rate, "msg/s"), ratios[0], ratios[len(ratios)-1], setting))
	wCPU, rCPU := wUse.cpu/float64(n)*1e6, rUse.cpu/float64(n)*1e6
	e.add(scenarioThroughput, "CPU per message: public API ÷ raw SDK loop", wCPU/rCPU, "ratio", atMost(1.3),
		fmt.Sprintf("raw loop %.1f µs/msg, %.1f allocs/msg (%s/msg)", rCPU, rUse.allocsPer(n), bytesPer(rUse, n)), rCPU,
		fmt.Sprintf("public API %.1f µs/msg, %.1f allocs/msg (%s/msg); this process's CPU, the server runs apart; %s",
			wCPU, wUse.allocsPer(n), bytesPer(wUse, n), setting))
	if e.opts.RTT > 0 {
		limit := float64(e.pinned()) * 10 / e.opts.RTT.Seconds()
		e.add(scenarioThroughput, "msg/s beside fetchers × 10 ÷ RTT", rate, "msg/s", nil,
			fmt.Sprintf("%d × 10 ÷ %s = %s (worker reaches %.2f of it)", e.pinned(), e.opts.RTT, format(limit, "msg/s"), rate/limit),
			limit, setting)
	}
	return nil
}

// requestsPerMessage runs requests-per-message: the in-process worker as
// users get it, its polls adapting, over a full queue.
func (e *env) requestsPerMessage(ctx context.Context) error {
	n := e.throughputMessages()
	_, reqs, _, err := e.throughputWorker(ctx, scenarioRequests, n, true, nil)
	if err != nil {
		return err
	}
	limit := "floor 0.200 (one receive and one delete per 10)"
	if e.noop.pinnedPerMsg > 0 {
		limit += fmt.Sprintf("; %d pinned fetchers %.3f, raw loop %.3f (%s)", e.pinned(), e.noop.pinnedPerMsg, e.noop.rawPerMsg, scenarioThroughput)
	}
	setting := fmt.Sprintf("%s msgs, %s, concurrency %d", thousands(float64(n)), e.fetchersSetting(), e.opts.Concurrency)
	e.add(scenarioRequests, "SQS requests per message at saturation", sum(reqs)/float64(n), "req/msg", atMost(0.21), limit, 0.2,
		fmt.Sprintf("%s; %s", breakdown(reqs, n), setting))
	return nil
}

// throughputWorker runs an in-process worker with a no-op handler, tuned
// by tune, over m fresh messages and returns how long it took from start
// to the last confirmed delete, its requests by action, and the CPU and
// allocations of this process over that time. profile profiles this round.
func (e *env) throughputWorker(ctx context.Context, scenario string, m int, profile bool, tune func(*sqsworker.Config)) (time.Duration, map[string]float64, usage, error) {
	q, err := e.fill(ctx, scenario, sqstest.QueueOptions{}, indexBodies(m))
	if err != nil {
		return 0, nil, usage{}, err
	}
	var handled atomic.Int64
	all := make(chan struct{})
	h := sqsworker.HandlerFunc(func(context.Context, *sqsworker.Message) error {
		if handled.Add(1) == int64(m) {
			close(all)
		}
		return nil
	})
	stopProf := func() error { return nil }
	if profile {
		if stopProf, err = e.prof.start(scenario); err != nil {
			return 0, nil, usage{}, err
		}
	}
	e.progress("%s: worker consumes %d messages (no-op handler)", scenario, m)
	w, err := e.startWorker(ctx, q.URL, h, tune)
	if err != nil {
		return 0, nil, usage{}, errors.Join(err, stopProf())
	}
	use0, err := measure()
	if err != nil {
		return 0, nil, usage{}, errors.Join(err, w.stop(), stopProf())
	}
	t0 := time.Now()
	err = waitClosed(ctx, all, 10*time.Minute, "every message handled")
	if err == nil {
		err = w.waitDeleted(ctx, m, time.Minute)
	}
	took := time.Since(t0)
	use1, merr := measure()
	reqs := w.requests()
	return took, reqs, use1.sub(use0), errors.Join(err, merr, w.stop(), stopProf())
}

// breakdown prints requests per message by action.
func breakdown(reqs map[string]float64, n int) string {
	short := map[string]string{"ReceiveMessage": "receive", "DeleteMessageBatch": "delete",
		"ChangeMessageVisibilityBatch": "visibility", "GetQueueAttributes": "attrs"}
	s := ""
	for _, a := range []string{"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch", "GetQueueAttributes"} {
		if v := reqs[a]; v > 0 {
			s += fmt.Sprintf("%s %.3f, ", short[a], v/float64(n))
		}
	}
	other := sum(reqs)
	for a := range short {
		other -= reqs[a]
	}
	return s + fmt.Sprintf("other %.3f", other/float64(n))
}

// warmUp runs the raw loop once over a scratch queue, so that the server's
// JIT is warm before the first figure is taken: its rate still climbs over
// the first tens of thousands of messages, which is also why
// noop-throughput alternates worker and raw loop in rounds.
func (e *env) warmUp(ctx context.Context) error {
	n := e.opts.count(10000, 20)
	q, err := e.fill(ctx, "warmup", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	_, err = e.rawLoop(ctx, q.URL, e.pinned(), n)
	return err
}

type rawResult struct {
	took     time.Duration // from start to the n-th confirmed delete
	requests float64       // requests sent in all
	usage    usage         // this process's CPU and allocations over took
	cpu      float64       // this process's CPU seconds over took
	machine  machineTicks  // the whole machine's CPU over took
}

// rawLoop is the baseline: goroutines each receive up to ten with a long
// poll and delete what they got in one batch, as fast as they can, until n
// messages are deleted. Its receives ask for every attribute, as the
// worker's do (a handler gets the message whole: receive count,
// timestamps, message attributes): asked for bodies only, the server
// does less work per message than for any consumer that hands them on,
// and the comparison would measure that instead of the consumer.
func (e *env) rawLoop(ctx context.Context, url string, goroutines, n int) (rawResult, error) {
	client := sqstest.NewClient(e.endpoint)
	wait := int32(e.opts.WaitTime / time.Second)
	// Polls still waiting once n are deleted are cancelled: the queue is
	// empty, so nothing is orphaned, and the next round need not wait.
	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var deleted, requests atomic.Int64
	var end time.Time
	var cpu1 float64
	var m1 machineTicks
	var once sync.Once
	errc := make(chan error, goroutines)
	var wg sync.WaitGroup
	cpu0, err := cpuSeconds(os.Getpid())
	if err != nil {
		return rawResult{}, err
	}
	m0 := readMachineTicks()
	use0, err := measure()
	if err != nil {
		return rawResult{}, err
	}
	var use1 usage
	start := time.Now()
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deleted.Load() < int64(n) && ctx.Err() == nil {
				out, err := client.ReceiveMessage(pollCtx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: wait,
					MessageSystemAttributeNames: allAttributes, MessageAttributeNames: allMessageAttributes,
				})
				requests.Add(1)
				if err != nil {
					if pollCtx.Err() == nil {
						errc <- fmt.Errorf("raw loop receive: %w", err)
					}
					return
				}
				if len(out.Messages) == 0 {
					continue
				}
				entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
				for i, m := range out.Messages {
					entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
				}
				dout, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
				requests.Add(1)
				if err != nil {
					errc <- fmt.Errorf("raw loop delete: %w", err)
					return
				}
				if deleted.Add(int64(len(dout.Successful))) >= int64(n) {
					once.Do(func() {
						end = time.Now()
						cpu1, _ = cpuSeconds(os.Getpid())
						m1 = readMachineTicks()
						use1, _ = measure()
						cancel()
					})
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return rawResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return rawResult{}, err
	}
	return rawResult{took: end.Sub(start), requests: float64(requests.Load()), cpu: cpu1 - cpu0, machine: m1.sub(m0), usage: use1.sub(use0)}, nil
}

// alternate runs a then b in even rounds, b then a in odd ones, so that
// neither side always runs on a server just filled, or just drained.
func alternate(round int, a, b func() error) error {
	if round%2 == 1 {
		a, b = b, a
	}
	if err := a(); err != nil {
		return err
	}
	return b()
}

// allAttributes and allMessageAttributes ask a receive for every
// attribute, as the worker does.
var (
	allAttributes        = []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}
	allMessageAttributes = []string{"All"}
)

// indexBodies returns n bodies, each its own index.
func indexBodies(n int) []string {
	b := make([]string, n)
	for i := range b {
		b[i] = strconv.Itoa(i)
	}
	return b
}

// waitClosed waits for ch to be closed.
func waitClosed(ctx context.Context, ch <-chan struct{}, within time.Duration, what string) error {
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("timed out after %s waiting for %s", within, what)
	}
}

// usage is this process's CPU time and heap allocations, or their growth
// over a span of time.
type usage struct {
	cpu           float64 // seconds
	allocs, bytes uint64
}

// measure reads this process's usage so far. It stops the world for a
// moment (runtime.ReadMemStats): call it at the edges of what is measured.
func measure() (usage, error) {
	cpu, err := cpuSeconds(os.Getpid())
	if err != nil {
		return usage{}, err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{cpu: cpu, allocs: ms.Mallocs, bytes: ms.TotalAlloc}, nil
}

func (u usage) sub(v usage) usage {
	return usage{cpu: u.cpu - v.cpu, allocs: u.allocs - v.allocs, bytes: u.bytes - v.bytes}
}

func (u usage) add(v usage) usage {
	return usage{cpu: u.cpu + v.cpu, allocs: u.allocs + v.allocs, bytes: u.bytes + v.bytes}
}

func (u usage) allocsPer(n int) float64 { return float64(u.allocs) / float64(n) }

func bytesPer(u usage, n int) string {
	return fmt.Sprintf("%.1f KiB", float64(u.bytes)/float64(n)/1024)
}
