package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"gocloud.dev/pubsub/awssnssqs"

	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// peer-throughput's setting: the worker as users run it, with handlers
// enough for the in-flight limit to matter, against the peers the
// worker should keep up with.
const (
	peerConcurrency = 200
	// peerPollers is the raw SDK loop's goroutines, each receiving 10
	// and deleting them before it receives again.
	peerPollers = 20
	// probeFactor times the worker's most polls is the goroutines of the
	// raw loop that probes the server's own ceiling, so that its own
	// round trips are not what holds it back.
	probeFactor = 2
	peerRounds  = 2
)

// consumer is one side of peer-throughput.
type consumer struct {
	name string
	run  func(ctx context.Context, queueURL string, n int) (rawResult, error)
	// bound is the rate its own design allows at the run's round trip
	// (0: none worth saying).
	bound   float64
	took    time.Duration
	cpu     float64
	machine machineTicks
}

// peerThroughput runs peer-throughput: the worker binary with default
// flags but --concurrency 200 and the no-op HTTP handler, beside
// in-process peers over as many messages (a raw SDK loop with 20 pollers,
// go-cloud's pubsub on SQS with 200 receivers) and a raw loop with twice
// the worker's most polls that probes what the server itself can do, in
// rounds that rotate their order. The worker's rate is judged against
// its concurrency-bound limit, the in-flight limit ÷ one receive round
// trip, or the server's ceiling when that is lower, and against the best
// peer.
func (e *env) peerThroughput(ctx context.Context) error {
	cfg := config.Default()
	cfg.Concurrency = peerConcurrency
	inFlight, maxPolls := cfg.InFlightLimit(), cfg.MaxFetchers()
	rtt, err := e.receiveRoundTrip(ctx)
	if err != nil {
		return err
	}
	limit := float64(inFlight) / rtt.Seconds()
	consumers := []*consumer{
		{name: "worker", run: e.peerWorker},
		{name: fmt.Sprintf("raw SDK loop, %d pollers", peerPollers), bound: float64(peerPollers*10) / (2 * rtt.Seconds()),
			run: func(ctx context.Context, url string, n int) (rawResult, error) {
				return e.rawLoop(ctx, url, peerPollers, n)
			}},
		{name: fmt.Sprintf("go-cloud pubsub (awssnssqs), %d receivers", peerConcurrency),
			run: func(ctx context.Context, url string, n int) (rawResult, error) {
				return e.goCloudLoop(ctx, url, peerConcurrency, n)
			}},
		{name: fmt.Sprintf("server-ceiling probe: raw SDK loop, %d pollers", probeFactor*maxPolls), bound: float64(probeFactor*maxPolls*10) / (2 * rtt.Seconds()),
			run: func(ctx context.Context, url string, n int) (rawResult, error) {
				return e.rawLoop(ctx, url, probeFactor*maxPolls, n)
			}},
	}
	n := e.opts.count(20000, 40)
	m := n / peerRounds
	for r := range peerRounds {
		order := slices.Clone(consumers)
		for range r {
			order = append(order[1:], order[0])
		}
		for _, c := range order {
			q, err := e.fill(ctx, "peer", sqstest.QueueOptions{}, indexBodies(m))
			if err != nil {
				return err
			}
			e.progress("%s round %d/%d: %s consumes %d messages", scenarioPeer, r+1, peerRounds, c.name, m)
			res, err := c.run(ctx, q.URL, m)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			c.took += res.took
			c.cpu += res.cpu
			c.machine = c.machine.add(res.machine)
		}
	}
	rate := func(c *consumer) float64 { return float64(m*peerRounds) / c.took.Seconds() }
	worker, peers, probe := consumers[0], consumers[1:3], consumers[3]
	best := slices.MaxFunc(peers, func(a, b *consumer) int { return cmp.Compare(rate(a), rate(b)) })
	ceiling := max(rate(probe), rate(best))
	target := min(limit, ceiling)
	describe := func(cs []*consumer) string {
		s := ""
		for _, c := range cs {
			s += fmt.Sprintf("%s %s, %.0f µs/msg, machine CPUs %.0f%% busy", c.name, format(rate(c), "msg/s"), perMsg(c.cpu, m*peerRounds), 100*c.machine.busyShare())
			if c.bound > 0 {
				s += fmt.Sprintf(" (its own bound %s)", format(c.bound, "msg/s"))
			}
			s += "; "
		}
		return s
	}
	setting := fmt.Sprintf("%s msgs each in %d rotating rounds; worker binary: default flags, --concurrency %d, in-flight limit %d, up to %d polls; receive round trip %.1f ms",
		thousands(float64(m*peerRounds)), peerRounds, peerConcurrency, inFlight, maxPolls, ms(rtt))
	e.note("%s's concurrency-bound limit is the in-flight limit (concurrency + prefetch) ÷ one receive round trip (median of unloaded empty receives): "+
		"a message holds its room from the receive that asks for it until its handler is done, and deletes are sent by as many concurrent calls as there are polls. "+
		"The local server (fauxqs, single-threaded, sharing the CPUs with everything measured) may allow less: its ceiling is the best rate of any in-process consumer, "+
		"among them a raw SDK loop with twice the worker's most polls. The worker's CPU µs/msg is its own process's; the peers' is sqsbench's process's%s. "+
		"Machine CPUs busy is the share of all CPUs' time (/proc/stat) that was busy over a consumer's measured span, the server, proxy and handler included: "+
		"near 100%% the machine, not the consumer's design, is what holds the rate.",
		scenarioPeer, map[bool]string{true: ", which also runs the latency proxy", false: ""}[e.opts.RTT > 0])
	// The goals are for real round trips: locally every consumer is bound
	// by the CPUs it shares with the server, and only the worker pays an
	// HTTP hop per message.
	ceilingGoal, peerGoal := atLeast(0.9), atLeast(1)
	if e.opts.RTT == 0 {
		ceilingGoal, peerGoal = nil, nil
	}
	e.add(scenarioPeer, "worker msg/s ÷ min(concurrency-bound limit, server ceiling)", rate(worker)/target, "ratio", ceilingGoal,
		fmt.Sprintf("concurrency-bound limit %d ÷ %.1f ms = %s; server ceiling %s; worker %s",
			inFlight, ms(rtt), format(limit, "msg/s"), format(ceiling, "msg/s"), format(rate(worker), "msg/s")),
		target, fmt.Sprintf("worker %.0f µs/msg (its own process), machine CPUs %.0f%% busy; %s%s",
			perMsg(worker.cpu, m*peerRounds), 100*worker.machine.busyShare(), describe([]*consumer{probe}), setting))
	e.add(scenarioPeer, "worker msg/s ÷ best in-process peer", rate(worker)/rate(best), "ratio", peerGoal,
		fmt.Sprintf("best peer: %s %s", best.name, format(rate(best), "msg/s")), rate(best),
		describe(peers)+setting)
	return nil
}

// peerWorker runs the worker binary as peer-throughput's worker.
func (e *env) peerWorker(ctx context.Context, queueURL string, n int) (rawResult, error) {
	run, err := e.runBinary(ctx, queueURL, n, 0, nil, "--concurrency", fmt.Sprint(peerConcurrency))
	return rawResult{took: run.took, cpu: run.workerCPU, machine: run.machine}, err
}

// receiveRoundTrip is the median of a few receives from an empty queue
// that do not wait: the round trip of a receive before any load.
func (e *env) receiveRoundTrip(ctx context.Context) (time.Duration, error) {
	q, err := e.fill(ctx, "peer-rtt", sqstest.QueueOptions{}, nil)
	if err != nil {
		return 0, err
	}
	client := sqstest.NewClient(e.endpoint)
	var took []time.Duration
	for range 21 {
		t0 := time.Now()
		if _, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 10}); err != nil {
			return 0, fmt.Errorf("receive from an empty queue: %w", err)
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	return quantile(took[1:], 0.5), nil // the first one also dials
}

// goCloudLoop is the go-cloud peer: receivers goroutines each receive one
// message from a pubsub subscription on the queue and ack it, until n are
// acked; the subscription batches receives and acks (deletes) itself, and
// its shutdown flushes the last acks.
func (e *env) goCloudLoop(ctx context.Context, url string, receivers, n int) (rawResult, error) {
	client := sqstest.NewClient(e.endpoint)
	cpu0, err := cpuSeconds(os.Getpid())
	if err != nil {
		return rawResult{}, err
	}
	m0 := readMachineTicks()
	start := time.Now()
	sub := awssnssqs.OpenSubscriptionV2(ctx, client, url, &awssnssqs.SubscriptionOptions{Raw: true, WaitTime: e.opts.WaitTime})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var acked atomic.Int64
	errc := make(chan error, receivers)
	var wg sync.WaitGroup
	for range receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := sub.Receive(rctx)
				if err != nil {
					if rctx.Err() == nil {
						errc <- fmt.Errorf("go-cloud receive: %w", err)
					}
					return
				}
				msg.Ack()
				if acked.Add(1) >= int64(n) {
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer stop()
	err = errors.Join(<-errc, ctx.Err())
	if serr := sub.Shutdown(shutdownCtx); err == nil && serr != nil && !errors.Is(serr, context.Canceled) {
		err = fmt.Errorf("go-cloud shutdown: %w", serr)
	}
	took := time.Since(start)
	cpu1, cerr := cpuSeconds(os.Getpid())
	return rawResult{took: took, cpu: cpu1 - cpu0, machine: readMachineTicks().sub(m0)}, errors.Join(err, cerr)
}
