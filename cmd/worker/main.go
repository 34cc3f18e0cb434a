// Command worker consumes an Amazon SQS queue: it receives messages, runs a
// handler on each, keeps their leases alive while the handler runs, and
// deletes them only after it succeeded. Its other subcommands are the
// day-two tools: save a queue to a file and load it back, move a
// dead-letter queue's messages back, replay them through the handler,
// show a queue's health, set it up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// command is one subcommand, declared once: its help, its flags and what
// it runs. dispatch gives every command the same flag, environment, help
// and error handling.
type command struct {
	name string
	// summary is the one line `worker help` shows.
	summary string
	// details, when set, follow the summary in --help.
	details string
	// example ends the command's --help: one or more command lines.
	example string
	// flags declares the command's flags on f and returns what runs once
	// they are parsed.
	flags func(f *flagSet) action
}

// action runs a command. Its error is shown as one line; a usage error
// (usageErr, or a config.FieldError) exits 2, any other 1.
type action func(ctx context.Context, std stdio) error

// stdio is what a command reads and writes: data on out, messages on err.
// signals brings the SIGTERMs and SIGINTs that come after the first, which
// cancelled the command's context: `run` forces its stop at the second.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	signals  <-chan os.Signal
}

func (c *command) about() string {
	if c.details == "" {
		return c.summary + "."
	}
	return c.summary + ".\n" + c.details
}

// commands in the order `worker help` lists them; the first is the default.
var commands = []*command{runCmd, drainCmd, loadCmd, redriveCmd, replayCmd, statsCmd, setupCmd, versionCmd}

// errUsage marks errors in how the command was called: exit status 2.
var errUsage = errors.New("usage")

func usageErr(err error) error { return fmt.Errorf("%w: %w", errUsage, err) }

func main() {
	if os.Getenv("GOGC") == "" {
		// About 10% more CPU in GC than the runtime's 100; `worker run`
		// raises it while the heap is small (tuneGC). Set GOGC to choose
		// otherwise.
		debug.SetGCPercent(baseGCPercent)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so that tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdio{in: os.Stdin, out: stdout, err: stderr})
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "worker: %s\n", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	default:
		fmt.Fprintf(stderr, "worker: %s\n", err)
		return 1
	}
}

// dispatch finds the subcommand (run when args start with a flag), parses
// its flags and environment, and runs it until it ends or a signal
// cancels its context.
func dispatch(args []string, std stdio) error {
	name := commands[0].name
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	} else if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		name, args = "help", nil
	}
	if name == "help" {
		return help(args, std.out)
	}
	cmd := lookup(name)
	if cmd == nil {
		return usageErr(fmt.Errorf("unknown subcommand %q (see worker help)", name))
	}
	f := newFlagSet(cmd.name)
	act := cmd.flags(f)
	if err := f.parse(cmd, args, std.out); err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	std.signals = ctx.later
	return f.explain(explainSQS(f, act(ctx, std)))
}

// interrupted is a command's context: cancelled by the first SIGTERM or
// SIGINT, with that signal as its cause; later ones arrive on later.
type interrupted struct {
	context.Context
	later <-chan os.Signal
}

// interruptible is the one place the worker listens for signals.
func interruptible() (interrupted, func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancelCause(context.Background())
	later := make(chan os.Signal, 2)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			cancel(signalCause{sig})
		case <-done:
			return
		}
		for {
			select {
			case sig := <-sigs:
				select {
				case later <- sig:
				default: // nobody waits for a third
				}
			case <-done:
				return
			}
		}
	}()
	return interrupted{Context: ctx, later: later}, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// signalCause is why a command's context was cancelled: a signal.
type signalCause struct{ sig os.Signal }

func (c signalCause) Error() string { return "received " + c.sig.String() }

// signalOf is the signal that cancelled ctx, nil if none did.
func signalOf(ctx context.Context) os.Signal {
	var c signalCause
	if errors.As(context.Cause(ctx), &c) {
		return c.sig
	}
	return nil
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// help lists the subcommands, or shows one's flags: worker help load.
func help(args []string, out io.Writer) error {
	if len(args) > 0 {
		if cmd := lookup(args[0]); cmd != nil {
			f := newFlagSet(cmd.name)
			cmd.flags(f)
			f.usage(out, cmd)
			return nil
		}
		return usageErr(fmt.Errorf("unknown subcommand %q (see worker help)", args[0]))
	}
	fmt.Fprintf(out, "Usage: worker <subcommand> [flags]\n\nSubcommands:\n")
	for i, c := range commands {
		def := ""
		if i == 0 {
			def = " (the default)"
		}
		fmt.Fprintf(out, "  %-7s %s%s\n", c.name, c.summary, def)
	}
	fmt.Fprintf(out, "  %-7s %s\n", "help", "show a subcommand's flags: worker help load")
	fmt.Fprint(out, `
Every flag can also be set with an environment variable: --concurrency is
SQSWORKER_CONCURRENCY; a flag on the command line wins. --queue-url and
--queue are one setting: either on the command line overrides both
variables, and both on the command line (or both variables) is bad usage.
Exit status: 0 done, 1 failed, 2 bad usage.

Example:
  worker run --queue orders --http-url http://127.0.0.1:8080/work
`)
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
