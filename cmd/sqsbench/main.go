// Command sqsbench runs sqsworker's performance scenarios against a local
// SQS-compatible server it starts itself, prints a markdown table of every
// figure beside its goal and the limit or baseline measured in the same
// run, and writes the same as JSON.
//
//	go run ./cmd/sqsbench                 # local
//	go run ./cmd/sqsbench --rtt 20ms      # 20 ms added to every round trip
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sqsworker/sqsworker/internal/bench"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sqsbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var opts bench.Options
	fs := flag.NewFlagSet("sqsbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sqsbench [flags]\n\nRuns these scenarios against a local server and prints their figures:\n\n")
		for _, s := range bench.Scenarios {
			fmt.Fprintf(fs.Output(), "  %-22s %s\n", s.Name, s.Measures)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	jsonPath := fs.String("json", "bench-results.json", "write the results as JSON here (empty: don't)")
	scenarios := fs.String("scenarios", strings.Join(bench.ScenarioNames(), ","), "comma-separated scenarios to run (see above)")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	readme := fs.String("readme", "", "run nothing: write the table of the JSON reports --from names (local, then with round trips) into this README, between its bench markers")
	from := fs.String("from", "bench-results.json,bench-results-rtt20ms.json", "with --readme: the comma-separated JSON reports to put side by side")
	fs.DurationVar(&opts.RTT, "rtt", 0, "real-region mode: add this round trip to every request with a TCP latency proxy (e.g. 20ms)")
	fs.Float64Var(&opts.Scale, "scale", 1, "multiply every message count by this")
	fs.IntVar(&opts.ThroughputMessages, "throughput-messages", 0, "binary-noop, requests-per-message and http-batch message count; noop-throughput takes twice as many (0: 50,000 × --scale)")
	fs.IntVar(&opts.ThroughputRounds, "throughput-rounds", 0, "noop-throughput alternates worker and raw loop in this many rounds (0: 8)")
	fs.IntVar(&opts.Concurrency, "concurrency", 0, "worker concurrency for noop-throughput, requests-per-message, binary-noop, pickup-latency (0: the worker's default, 16)")
	fs.IntVar(&opts.Fetchers, "fetchers", 0, "pin the worker's fetchers in the same scenarios, and the raw loop's goroutines (0: the worker adapts them; noop-throughput pins 2 on both sides)")
	fs.DurationVar(&opts.WaitTime, "wait-time", 0, "long-poll wait (0: 2s; shutdown waits for polls in flight)")
	fs.IntVar(&opts.LongTailConcurrency, "long-tail-concurrency", 0, "long-tail-utilization handler concurrency (0: 200)")
	fs.IntVar(&opts.LongTailFetchers, "long-tail-fetchers", 0, "long-tail-utilization fetchers (0: rate × round trip ÷ 10, with headroom)")
	fs.Uint64Var(&opts.Seed, "seed", 0, "seed of long-tail-utilization's handler times (0: 4)")
	fs.DurationVar(&opts.HeartbeatVisibility, "heartbeat-visibility", 0, "heartbeat-cost visibility timeout, whole seconds ≥ 2s (0: 3s)")
	fs.Float64Var(&opts.HeartbeatHold, "heartbeat-hold", 0, "heartbeat-cost holds messages this many visibility timeouts (0: 5)")
	fs.DurationVar(&opts.IdleDuration, "idle-duration", 0, "idle-cost leaves the worker on an empty queue this long (0: 60s)")
	fs.DurationVar(&opts.FootprintHold, "footprint-hold", 0, "footprint handler time, so that 1,000 messages are in flight (0: 500ms)")
	fs.IntVar(&opts.IntegrityRuns, "integrity-runs", 0, "how many times receive-integrity runs its case (0: 20)")
	fs.DurationVar(&opts.BackpressureWarmup, "backpressure-warmup", 0, "backpressure lets the worker find the endpoint's capacity this long before it counts (0: 10s)")
	fs.DurationVar(&opts.BackpressureSpan, "backpressure-span", 0, "backpressure counts the endpoint's answers this long after the warm-up (0: 20s)")
	fs.StringVar(&opts.WorkerBinary, "worker", "", "worker binary for the scenarios that run one (empty: build ./cmd/worker)")
	fs.StringVar(&opts.CPUProfile, "cpuprofile", "", "write a CPU profile of each in-process scenario's worker phase here (noop-throughput: its first round; --throughput-rounds 1 profiles all of it)")
	fs.StringVar(&opts.MemProfile, "memprofile", "", "write an allocation profile at the end of each in-process scenario here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *readme != "" {
		return writeREADME(*readme, strings.Split(*from, ","))
	}
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			opts.Scenarios = append(opts.Scenarios, s)
		}
	}
	if !*quiet {
		opts.Progress = os.Stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, err := bench.Run(ctx, opts)
	if report != nil && len(report.Rows) > 0 {
		report.Markdown(os.Stdout)
		if *jsonPath != "" {
			if jerr := report.WriteJSON(*jsonPath); jerr != nil {
				return errors.Join(err, jerr)
			}
			fmt.Fprintf(os.Stderr, "sqsbench: wrote %s\n", *jsonPath)
		}
	}
	return err
}

// writeREADME puts the reports at paths side by side in the README's table.
func writeREADME(readme string, paths []string) error {
	var reports []*bench.Report
	for _, p := range paths {
		r, err := bench.ReadJSON(strings.TrimSpace(p))
		if err != nil {
			return err
		}
		reports = append(reports, r)
	}
	if err := bench.WriteREADME(readme, reports...); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sqsbench: wrote the table of %s into %s\n", strings.Join(paths, ", "), readme)
	return nil
}
