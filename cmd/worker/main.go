// Command worker consumes an Amazon SQS queue: it receives messages, runs a
// handler on each, keeps their leases alive while the handler runs, and
// deletes them only after it succeeded.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const topUsage = `Usage: worker [run] [flags]

Subcommands:
  run    consume a queue (the default)

Run 'worker run --help' for the flags. Every flag can also be set with an
environment variable: --concurrency is SQSWORKER_CONCURRENCY.
`

// errUsage marks errors in how the command was called: exit status 2.
var errUsage = errors.New("usage")

func main() {
	if os.Getenv("GOGC") == "" {
		// The live heap is small (leases, buffers of in-flight requests)
		// and a worker runs beside the application it serves: collect at
		// 1.5x it rather than 2x. About 10% more CPU in GC; set GOGC to
		// choose otherwise.
		debug.SetGCPercent(50)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so that tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runCommand(args, stdout)
	case "help":
		fmt.Fprint(stdout, topUsage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown subcommand %q (see worker --help)", errUsage, cmd)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "worker: %s\n", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	default:
		fmt.Fprintf(stderr, "worker: %s\n", err)
		return 1
	}
}

// parseFlags parses env then args into fs, turning the flag package's
// multi-line complaints into one line.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, cmd, summary string, groups []flagGroup) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := applyEnv(fs); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, cmd, summary, fs, groups)
			return err
		}
		return fmt.Errorf("%w: %w (see worker %s --help)", errUsage, err, cmd)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see worker %s --help)", errUsage, fs.Arg(0), cmd)
	}
	return nil
}

func newLogger(level, format string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	if format == "console" {
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder // "retry_in":"1.5s", unit visible
	cfg.Sampling = &zap.SamplingConfig{Initial: 20, Thereafter: 100} // rate-limits repeated lines
	cfg.DisableStacktrace = true
	cfg.OutputPaths = []string{"stderr"}
	return cfg.Build()
}
