package bench

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// httpBatchSize is the batch http-batch posts: SQS's most per receive.
const httpBatchSize = 10

// httpBatch runs http-batch: the worker binary posting Lambda-shaped
// batches of ten to the no-op HTTP handler, beside a raw SDK loop over as
// many messages and the binary posting one message per request, each
// measured over its own fresh queue in this run.
func (e *env) httpBatch(ctx context.Context) error {
	n := e.throughputMessages()
	run := func(name string, args ...string) (binaryRun, error) {
		q, err := e.fill(ctx, name, sqstest.QueueOptions{}, indexBodies(n))
		if err != nil {
			return binaryRun{}, err
		}
		e.progress("%s: worker binary consumes %d messages (%s)", scenarioHTTPBatch, n, name)
		return e.runBinary(ctx, q.URL, n, 0, nil, append([]string{"--concurrency", strconv.Itoa(e.opts.Concurrency)}, args...)...)
	}
	batch, err := run("http-batch", "--http-batch-size", strconv.Itoa(httpBatchSize))
	if err != nil {
		return err
	}
	single, err := run("http-one")
	if err != nil {
		return err
	}
	rq, err := e.fill(ctx, "http-batch-raw", sqstest.QueueOptions{}, indexBodies(n))
	if err != nil {
		return err
	}
	e.progress("%s: raw SDK loop consumes %d messages with %d goroutines", scenarioHTTPBatch, n, e.pinned())
	raw, err := e.rawLoop(ctx, rq.URL, e.pinned(), n)
	if err != nil {
		return err
	}

	rate := func(r binaryRun) float64 { return float64(n) / r.took.Seconds() }
	rawRate, rawUS := float64(n)/raw.took.Seconds(), perMsg(raw.cpu, n)
	batchUS, singleUS := perMsg(batch.workerCPU, n), perMsg(single.workerCPU, n)
	setting := fmt.Sprintf("%s msgs each, concurrency %d (requests in flight)", thousands(float64(n)), e.opts.Concurrency)
	rawText := fmt.Sprintf("raw SDK loop %s, %.1f µs/msg (%d goroutines, receive 10 → delete batch)", format(rawRate, "msg/s"), rawUS, e.pinned())
	e.add(scenarioHTTPBatch, "binary, HTTP batches of 10: throughput ÷ raw SDK loop", rate(batch)/rawRate, "ratio", atLeast(0.9),
		rawText, rawRate, fmt.Sprintf("batches %s; one message per request %s (%.2f of the raw loop); %s",
			format(rate(batch), "msg/s"), format(rate(single), "msg/s"), rate(single)/rawRate, setting))
	e.add(scenarioHTTPBatch, "binary, HTTP batches of 10: CPU per message ÷ raw SDK loop", batchUS/rawUS, "ratio", atMost(1.5),
		rawText, rawUS, fmt.Sprintf("%.1f messages per request on average; worker process %.1f µs/msg with batches, %.1f µs/msg one message per request (%.2f of the raw loop); handler process %.1f and %.1f µs/msg, not included",
			float64(batch.handler.Messages)/float64(max(1, batch.handler.Handled)), batchUS, singleUS, singleUS/rawUS, perMsg(batch.handlerCPU, n), perMsg(single.handlerCPU, n)))
	return nil
}
