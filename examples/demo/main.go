// Command demo runs the whole job end to end on one machine and prints a
// summary: a local SQS-compatible server, a queue with a dead-letter queue,
// a few thousand orders (some of them poison), the example handler and the
// worker binary. It is the program behind `make demo`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// maxReceiveCount is the demo queue's redrive policy: a poison message is
// handled this many times, then the server moves it to the DLQ.
const maxReceiveCount = 3

type options struct {
	worker, handler  string
	messages, poison int
	timeout          time.Duration
	verbose          bool
}

func main() {
	var o options
	flag.StringVar(&o.worker, "worker", "bin/worker", "path of the worker binary")
	flag.StringVar(&o.handler, "handler", "bin/demo-handler", "path of the example handler binary (examples/handler)")
	flag.IntVar(&o.messages, "messages", 2000, "orders to send")
	flag.IntVar(&o.poison, "poison", 5, "how many of the orders the handler rejects; they must end in the DLQ")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long the worker may take to empty the queue")
	flag.BoolVar(&o.verbose, "verbose", false, "show every line of the worker's log, not only warnings and errors")
	flag.Parse()
	if o.messages < 1 || o.poison < 0 || o.poison > o.messages {
		fmt.Fprintln(os.Stderr, "demo: --messages must be at least 1 and --poison between 0 and --messages")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
}

// demo holds what run started, so that every way out stops all of it.
type demo struct {
	o          options
	server     *sqstest.Server
	queue      sqstest.Queue
	handler    *sqstest.Process
	handlerURL string
	worker     *sqstest.Worker
}

// cleanup kills whatever is still running; on the success path everything
// has already been stopped gracefully and this does nothing.
func (d *demo) cleanup() {
	if d.worker != nil {
		d.worker.Kill()
	}
	d.handler.Kill()
	if d.server != nil {
		d.server.Stop()
	}
}

func run(o options) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	d := &demo{o: o}
	defer d.cleanup()
	if err := d.setUp(ctx); err != nil {
		return err
	}
	t, err := d.waitUntilDone(ctx)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w\nlast lines of the worker's log:\n%s", err, d.worker.LastLines(40))
	}
	if err != nil {
		return err
	}
	r, err := d.finish(ctx, t)
	if err != nil {
		return err
	}
	r.print(os.Stdout)
	return r.check()
}

func (d *demo) setUp(ctx context.Context) error {
	var err error
	step("starting the local SQS server")
	if d.server, err = sqstest.Start(); err != nil {
		return err
	}
	d.queue, err = d.server.CreateQueue(ctx, "demo-orders", sqstest.QueueOptions{MaxReceiveCount: maxReceiveCount})
	if err != nil {
		return err
	}
	step("sending %d orders (%d poison) to %s", d.o.messages, d.o.poison, d.queue.Name)
	if err := d.server.SendBodies(ctx, d.queue.URL, orders(d.o.messages, d.o.poison), nil); err != nil {
		return fmt.Errorf("send the orders: %w", err)
	}
	if d.handler, d.handlerURL, err = startHandler(d.o.handler); err != nil {
		return err
	}
	step("handler listening at %s", d.handlerURL)
	// The worker logs JSON at info, so that the harness reads its
	// "worker started" line; the demo shows only warnings and errors
	// unless --verbose.
	d.worker, err = d.server.StartWorker(d.o.worker, sqstest.WorkerOptions{
		Args: []string{"--queue-url", d.queue.URL, "--http-url", d.handlerURL,
			"--concurrency", "32", "--fetchers", "4", "--wait-time", "2s",
			"--retry-backoff-min", "1s", "--retry-backoff-max", "2s"},
		Line: passLog(d.o.verbose),
	})
	if err != nil {
		return err
	}
	step("worker started; metrics at http://%s/metrics", d.worker.MetricsAddr)
	return nil
}

// orders builds the message bodies, with the poison ones spread evenly.
func orders(n, poison int) []string {
	bad := make(map[int]bool, poison)
	for i := range poison {
		bad[i*n/poison] = true
	}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"order_id":%d,"amount_cents":%d,"poison":%t}`, 100000+i, 100+(i*7919)%90000, bad[i])
	}
	return out
}

// finish scrapes the worker's metrics, stops the worker and the handler
// gracefully and reads what is left in the queues.
func (d *demo) finish(ctx context.Context, t timings) (report, error) {
	r := report{sent: d.o.messages, poison: d.o.poison, timings: t}
	m, err := d.settledMetrics(ctx)
	if err != nil {
		return r, err
	}
	r.fromMetrics(m)
	if r.handled, err = handlerStats(ctx, d.handlerURL); err != nil {
		return r, err
	}

	stopAt := time.Now()
	if r.workerExit, err = d.worker.Stop(syscall.SIGTERM, 45*time.Second); err != nil {
		return r, err
	}
	step("worker stopped %.1fs after SIGTERM, exit status %d", time.Since(stopAt).Seconds(), r.workerExit)
	if _, err := d.handler.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
		return r, err
	}
	if r.left, err = d.server.QueueDepth(ctx, d.queue.URL); err != nil {
		return r, err
	}
	dlq, err := d.server.QueueDepth(ctx, d.queue.DLQURL)
	if err != nil {
		return r, err
	}
	r.dlq = dlq.Visible + dlq.InFlight + dlq.Delayed
	d.server.Stop()
	return r, nil
}

// settledMetrics scrapes until the worker has counted every delete the
// server already made (the counter moves just after the server answers),
// or for at most five seconds.
func (d *demo) settledMetrics(ctx context.Context) (sqstest.Metrics, error) {
	want := float64(d.o.messages - d.o.poison)
	var m sqstest.Metrics
	var err error
	// Past the five seconds the last scrape is what there is.
	_ = sqstest.Poll(ctx, 5*time.Second, 50*time.Millisecond, "the worker to count every delete", func() bool {
		m, err = d.worker.Scrape(ctx)
		return err != nil || m.Value("sqsworker_messages_deleted_total") >= want
	})
	return m, err
}

func step(format string, args ...any) {
	fmt.Printf("demo: "+format+"\n", args...)
}
