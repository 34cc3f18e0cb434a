// Command sqsbench runs the performance scenarios of issue 4 (P1–P6)
// against a local SQS-compatible server it starts itself, prints a
// markdown table of every figure beside its goal and the limit measured in
// the same run, and writes the same as JSON.
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
		fmt.Fprintf(fs.Output(), "Usage: sqsbench [flags]\n\nRuns the scenarios %s against a local server and prints their figures.\n\n",
			strings.Join(bench.Scenarios, ","))
		fs.PrintDefaults()
	}
	jsonPath := fs.String("json", "bench-results.json", "write the results as JSON here (empty: don't)")
	scenarios := fs.String("scenarios", strings.Join(bench.Scenarios, ","), "comma-separated scenarios to run (BIN is P1/P2 through the worker binary)")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	fs.DurationVar(&opts.RTT, "rtt", 0, "real-region mode: add this round trip to every request with a TCP latency proxy (e.g. 20ms)")
	fs.Float64Var(&opts.Scale, "scale", 1, "multiply every message count by this")
	fs.IntVar(&opts.P1Messages, "p1-messages", 0, "P1/BIN message count (0: 50,000 × --scale)")
	fs.IntVar(&opts.P1Rounds, "p1-rounds", 0, "P1 alternates worker and raw loop in this many rounds (0: 6)")
	fs.IntVar(&opts.Concurrency, "concurrency", 0, "worker concurrency for P1, P2, BIN, P4 (0: the worker's default, 16)")
	fs.IntVar(&opts.Fetchers, "fetchers", 0, "worker fetchers for P1, P2, BIN, P4, and raw-loop goroutines (0: the worker's default, 2)")
	fs.DurationVar(&opts.WaitTime, "wait-time", 0, "long-poll wait (0: 2s; shutdown waits for polls in flight)")
	fs.IntVar(&opts.P3Concurrency, "p3-concurrency", 0, "P3 handler concurrency (0: 200)")
	fs.IntVar(&opts.P3Fetchers, "p3-fetchers", 0, "P3 fetchers (0: rate × round trip ÷ 10, with headroom)")
	fs.Uint64Var(&opts.Seed, "seed", 0, "seed of P3's handler times (0: 4)")
	fs.DurationVar(&opts.P5Visibility, "p5-visibility", 0, "P5 visibility timeout, whole seconds ≥ 2s (0: 3s)")
	fs.Float64Var(&opts.P5Hold, "p5-hold", 0, "P5 holds messages this many visibility timeouts (0: 6)")
	fs.DurationVar(&opts.P6Hold, "p6-hold", 0, "P6 handler time, so that 1,000 messages are in flight (0: 500ms)")
	fs.StringVar(&opts.WorkerBinary, "worker", "", "worker binary for BIN and P6 (empty: build ./cmd/worker)")
	fs.StringVar(&opts.CPUProfile, "cpuprofile", "", "write a CPU profile of each in-process scenario's worker phase here (P1: its first round; --p1-rounds 1 profiles all of it)")
	fs.StringVar(&opts.MemProfile, "memprofile", "", "write an allocation profile at the end of each in-process scenario here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.ToUpper(strings.TrimSpace(s)); s != "" {
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
