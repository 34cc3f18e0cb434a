package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/config"
)

// TestEveryHelpListsItsFlagsAndEndsWithAnExample runs --help of every
// subcommand, and `worker help`.
func TestEveryHelpListsItsFlagsAndEndsWithAnExample(t *testing.T) {
	t.Parallel()
	var top bytes.Buffer
	if code := run([]string{"help"}, &top, io.Discard); code != 0 {
		t.Fatalf("worker help: exit %d", code)
	}
	for _, cmd := range commands {
		t.Run(cmd.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(top.String(), "  "+cmd.name+" ") {
				t.Errorf("worker help does not list %s", cmd.name)
			}
			var out, viaHelp, stderr bytes.Buffer
			if code := run([]string{cmd.name, "--help"}, &out, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if code := run([]string{"help", cmd.name}, &viaHelp, &stderr); code != 0 || viaHelp.String() != out.String() {
				t.Errorf("worker help %s (exit %d) differs from worker %s --help", cmd.name, code, cmd.name)
			}
			help := out.String()
			i := strings.LastIndex(help, "\nExample:\n  worker "+cmd.name+" ")
			if i < 0 || strings.Contains(help[i+1:], "\n\n") {
				t.Errorf("--help does not end with an example of worker %s:\n%s", cmd.name, help)
			}
			f := newFlagSet(cmd.name)
			cmd.flags(f)
			recorded := map[string]bool{}
			for _, name := range f.fields {
				recorded[name] = true
			}
			f.fs.VisitAll(func(fl *flag.Flag) {
				if want := "--" + fl.Name + " (" + envName(fl.Name) + ")"; !strings.Contains(help, want) {
					t.Errorf("--help lacks %q", want)
				}
				if !recorded[fl.Name] {
					t.Errorf("--%s sets no recorded field", fl.Name)
				}
			})
		})
	}
	if !strings.HasSuffix(top.String(), "\nExample:\n  worker run --queue orders --http-url http://127.0.0.1:8080/work\n") {
		t.Errorf("worker help does not end with an example:\n%s", top.String())
	}
}

func TestFieldErrorsAreShownUnderTheirFlag(t *testing.T) {
	t.Parallel()
	f := newFlagSet("run")
	cfg := config.Default()
	runFlags(f, &cfg)
	for field, flagName := range map[string]string{"Concurrency": "concurrency", "QueueURL": "queue-url", "Exec": "exec",
		"QueueStatsInterval": "queue-stats-interval"} {
		fe := &config.FieldError{Field: field, Msg: "is wrong: it must be right"}
		err := f.explain(usageErr(fe))
		if !errors.Is(err, errUsage) || !strings.HasSuffix(err.Error(), ": --"+flagName+" is wrong: it must be right") {
			t.Errorf("%s: %v, want a usage error naming --%s", field, err, flagName)
		}
		if err := f.explain(fe); errors.Is(err, errUsage) || err.Error() != "--"+flagName+" is wrong: it must be right" {
			t.Errorf("%s at run time: %v, want it naming --%s, and not a usage error", field, err, flagName)
		}
	}
	either := &config.FieldError{Field: "QueueURL", Or: []string{"Queue"}, Msg: "is required"}
	if err := f.explain(either); err.Error() != "--queue-url or --queue is required" {
		t.Errorf("%v, want both flags named", err)
	}
	if err := f.explain(errors.New("plain")); errors.Is(err, errUsage) || err.Error() != "plain" {
		t.Errorf("a plain error changed: %v", err)
	}

	var stderr bytes.Buffer
	if code := run([]string{"stats", "--queue", "q", "--watch", "500ms"}, io.Discard, &stderr); code != 2 ||
		stderr.String() != "worker: --watch is 500ms: it must be 0 (once) or at least 1s\n" {
		t.Errorf("stats --watch 500ms: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"setup", "--queue", "orders", "--content-based-dedup"}, io.Discard, &stderr); code != 2 ||
		!strings.HasPrefix(stderr.String(), "worker: --content-based-dedup is only for FIFO queues") {
		t.Errorf("setup --content-based-dedup on a standard queue: exit %d, stderr %q", code, stderr.String())
	}
}

func TestEnvironmentSetsEveryCommandsFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SQSWORKER_QUEUE": "orders", "SQSWORKER_RATE": "250/s", "SQSWORKER_WATCH": "2s",
		"SQSWORKER_SUBSCRIBE": "arn:aws:sns:eu-west-1:1:a,arn:aws:sns:eu-west-1:1:b"}
	for _, tt := range []struct {
		cmd  *command
		args []string
		want map[string]string
	}{
		{loadCmd, nil, map[string]string{"queue": "orders", "rate": "250/s"}},
		{loadCmd, []string{"--rate", "10"}, map[string]string{"rate": "10/s"}},
		{statsCmd, nil, map[string]string{"queue": "orders", "watch": (2 * time.Second).String()}},
		{setupCmd, []string{"--subscribe", "arn:aws:sns:eu-west-1:1:c"}, map[string]string{"subscribe": "arn:aws:sns:eu-west-1:1:a,arn:aws:sns:eu-west-1:1:b,arn:aws:sns:eu-west-1:1:c"}},
	} {
		f := newFlagSet(tt.cmd.name)
		f.env = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		tt.cmd.flags(f)
		if err := f.parse(tt.cmd, tt.args, io.Discard); err != nil {
			t.Fatalf("%s %v: %v", tt.cmd.name, tt.args, err)
		}
		for name, want := range tt.want {
			if got := f.fs.Lookup(name).Value.String(); got != want {
				t.Errorf("%s %v: --%s is %q, want %q", tt.cmd.name, tt.args, name, got, want)
			}
		}
	}
}
