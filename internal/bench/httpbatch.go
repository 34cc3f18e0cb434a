package bench

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// httpBatchSize is the batch http-batch posts: SQS's most per receive.
const httpBatchSize = 10

// httpBatchRounds is how many rounds http-batch alternates the binary
// posting batches and the raw loop in, as noop-throughput does: run one
// after the other, their rates drift apart with the machine's load. Each
// round takes the scenario's whole message count: a binary's run starts
// with its polls adapting up, which shorter rounds would weigh too much.
const httpBatchRounds = 2

// httpBatch runs http-batch: the worker binary posting Lambda-shaped
// batches of ten to the no-op HTTP handler, beside a raw SDK loop over as
// many messages, the two alternating in rounds, and the binary posting
// one message per request, each over its own fresh queue in this run.
func (e *env) httpBatch(ctx context.Context) error {
	n := e.throughputMessages()
	run := func(name string, m int, args ...string) (binaryRun, error) {
		q, err := e.fill(ctx, name, sqstest.QueueOptions{}, indexBodies(m))
		if err != nil {
			return binaryRun{}, err
		}
		e.progress("%s: worker binary consumes %d messages (%s)", scenarioHTTPBatch, m, name)
		return e.runBinary(ctx, q.URL, m, 0, nil, append([]string{"--concurrency", strconv.Itoa(e.opts.Concurrency)}, args...)...)
	}
	var batch binaryRun
	var raw rawResult
	rounds := httpBatchRounds
	for r := range rounds {
		m := n
		batchRound := func() error {
			b, err := run("http-batch", m, "--http-batch-size", strconv.Itoa(httpBatchSize))
			batch.took += b.took
			batch.workerCPU += b.workerCPU
			batch.handlerCPU += b.handlerCPU
			batch.handler.Messages += b.handler.Messages
			batch.handler.Handled += b.handler.Handled
			return err
		}
		rawRound := func() error {
			rq, err := e.fill(ctx, "http-batch-raw", sqstest.QueueOptions{}, indexBodies(m))
			if err != nil {
				return err
			}
			e.progress("%s: raw SDK loop consumes %d messages with %d goroutines", scenarioHTTPBatch, m, e.pinned())
			res, err := e.rawLoop(ctx, rq.URL, e.pinned(), m)
			raw.took += res.took
			raw.cpu += res.cpu
			return err
		}
		if err := alternate(r, batchRound, rawRound); err != nil {
			return err
		}
		e.dropQueues()
	}
	single, err := run("http-one", n)
	if err != nil {
		return err
	}

	total := rounds * n // each of batches and raw loop
	rate := func(r binaryRun, msgs int) float64 { return float64(msgs) / r.took.Seconds() }
	rawRate, rawUS := float64(total)/raw.took.Seconds(), perMsg(raw.cpu, total)
	batchUS, singleUS := perMsg(batch.workerCPU, total), perMsg(single.workerCPU, n)
	setting := fmt.Sprintf("%d rounds of %s msgs alternating batches and raw loop, then %s one per request; concurrency %d (requests in flight)",
		rounds, thousands(float64(n)), thousands(float64(n)), e.opts.Concurrency)
	rawText := fmt.Sprintf("raw SDK loop %s, %.1f µs/msg (%d goroutines, receive 10 with every attribute → delete batch)", format(rawRate, "msg/s"), rawUS, e.pinned())
	e.add(scenarioHTTPBatch, "binary, HTTP batches of 10: throughput ÷ raw SDK loop", rate(batch, total)/rawRate, "ratio", atLeast(0.9),
		rawText, rawRate, fmt.Sprintf("batches %s; one message per request %s (%.2f of the raw loop); %s",
			format(rate(batch, total), "msg/s"), format(rate(single, n), "msg/s"), rate(single, n)/rawRate, setting))
	e.add(scenarioHTTPBatch, "binary, HTTP batches of 10: CPU per message ÷ raw SDK loop", batchUS/rawUS, "ratio", atMost(1.5),
		rawText, rawUS, fmt.Sprintf("%.1f messages per request on average; worker process %.1f µs/msg with batches, %.1f µs/msg one message per request (%.2f of the raw loop); handler process %.1f and %.1f µs/msg, not included",
			float64(batch.handler.Messages)/float64(max(1, batch.handler.Handled)), batchUS, singleUS, singleUS/rawUS, perMsg(batch.handlerCPU, total), perMsg(single.handlerCPU, n)))
	return nil
}
