package handler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/tracing"
)

const (
	// DefaultOutputLimit is how many bytes of stdout and of stderr are kept
	// when ExecConfig.OutputLimit is zero.
	DefaultOutputLimit = 4096
	// execKillDelay is how long a cancelled command gets between SIGTERM and
	// SIGKILL to finish cleanly.
	execKillDelay = 5 * time.Second
	// BaseExecEnv lists, comma-separated, the worker's environment variables
	// every command gets: what a program needs to find others and to read
	// and write text, and nothing that could hold a credential. A name
	// ending in * stands for every name with that prefix.
	BaseExecEnv = "PATH,HOME,LANG,LC_*,TZ,TMPDIR"
)

// ExecConfig configures the command handler.
type ExecConfig struct {
	// Argv is the command and its arguments, run without a shell. Required.
	Argv []string
	// Timeout bounds one run, on top of the ctx passed to Handle.
	// Defaults to 0: ctx alone bounds it.
	Timeout time.Duration
	// OutputLimit is how many bytes of stdout and of stderr are kept for
	// logs and errors. Defaults to DefaultOutputLimit.
	OutputLimit int
	// Env names the worker's environment variables the command gets on
	// top of BaseExecEnv; a name ending in * stands for every name with
	// that prefix (AWS_*). Defaults to none: the worker's credentials,
	// tokens and other settings stay out of the command's reach.
	Env []string
	// InheritEnv gives the command the worker's whole environment, Env or
	// not. Defaults to false.
	InheritEnv bool
	// OutputInErrors quotes the command's stderr and stdout in the error of
	// a failed run. Defaults to false: they may carry message content, so
	// they are logged at debug level only.
	OutputInErrors bool
}

// Exec runs a command per message: the body on stdin, the metadata in
// SQS_* environment variables. Exit status 0 is success.
type Exec struct {
	argv        []string
	path        string
	timeout     time.Duration
	outputLimit int
	// environ is what the command inherits of the worker's environment.
	environ        []string
	outputInErrors bool
	killDelay      time.Duration
	logger         *zap.Logger
}

// NewExec validates cfg and resolves the command once, so a typo fails at
// startup rather than on every message. It reads the worker's environment
// once, here.
func NewExec(cfg ExecConfig, logger *zap.Logger) (*Exec, error) {
	return newExec(cfg, logger, os.Environ())
}

// newExec is NewExec with the worker's environment given.
func newExec(cfg ExecConfig, logger *zap.Logger, environ []string) (*Exec, error) {
	if len(cfg.Argv) == 0 || cfg.Argv[0] == "" {
		return nil, errors.New("exec handler: Argv is empty: give the program to run and its arguments, such as ./process.sh")
	}
	p, err := exec.LookPath(cfg.Argv[0])
	if err != nil {
		return nil, fmt.Errorf("exec handler: find command %q: %w; give its full path or add its directory to PATH", cfg.Argv[0], err)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("exec handler: Timeout %s: must be 0 (no limit of its own) or positive", cfg.Timeout)
	}
	if cfg.OutputLimit < 0 {
		return nil, fmt.Errorf("exec handler: OutputLimit %d: must be 0 (default %d) or positive", cfg.OutputLimit, DefaultOutputLimit)
	}
	if cfg.OutputLimit == 0 {
		cfg.OutputLimit = DefaultOutputLimit
	}
	for _, name := range cfg.Env {
		if err := CheckEnvName(name); err != nil {
			return nil, fmt.Errorf("exec handler: Env: %w", err)
		}
	}
	if !cfg.InheritEnv {
		environ = filterEnv(environ, append(strings.Split(BaseExecEnv, ","), cfg.Env...))
	}
	return &Exec{
		argv:           append([]string(nil), cfg.Argv...),
		path:           p,
		timeout:        cfg.Timeout,
		outputLimit:    cfg.OutputLimit,
		environ:        environ,
		outputInErrors: cfg.OutputInErrors,
		killDelay:      execKillDelay,
		logger:         logger.Named("exec"),
	}, nil
}

// CheckEnvName checks one name of ExecConfig.Env: letters, digits and
// underscores, with an optional * at the end for a prefix.
func CheckEnvName(name string) error {
	prefix := strings.TrimSuffix(name, "*")
	if prefix == "" {
		return fmt.Errorf("%q names no variable: give a name such as AWS_REGION or a prefix such as AWS_* (InheritEnv passes everything)", name)
	}
	for _, c := range prefix {
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fmt.Errorf("%q is not a variable name: letters, digits and _, with an optional * at the end", name)
		}
	}
	return nil
}

// filterEnv keeps the NAME=value entries of environ whose name is one of
// names, or starts with a names entry that ends in *.
func filterEnv(environ, names []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if slices.ContainsFunc(names, func(want string) bool {
			prefix, isPrefix := strings.CutSuffix(want, "*")
			return name == want || isPrefix && strings.HasPrefix(name, prefix)
		}) {
			out = append(out, kv)
		}
	}
	return out
}

// Handle runs the command for msg and waits for it to exit.
func (e *Exec) Handle(ctx context.Context, msg *message.Message) error {
	runCtx := ctx
	if e.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, e.timeout)
		defer cancel()
	}

	stdout := &capWriter{limit: e.outputLimit}
	stderr := &capWriter{limit: e.outputLimit}
	cmd := exec.CommandContext(runCtx, e.path, e.argv[1:]...)
	cmd.Args[0] = e.argv[0]
	cmd.Stdin = strings.NewReader(msg.Body)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.Env = append(e.env(msg), tracing.Env(ctx, msg)...)
	// Its own process group, so a signal reaches everything the command
	// started (a shell script's children), not just the command itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGTERM) }
	// After SIGTERM, wait this long before SIGKILL and before giving up on
	// pipes that orphaned grandchildren hold open.
	cmd.WaitDelay = e.killDelay

	start := time.Now()
	err := cmd.Run()
	if runCtx.Err() != nil && cmd.Process != nil {
		// The leader may be gone while children that ignored SIGTERM live on;
		// they still share its group.
		_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
	}
	elapsed := time.Since(start)

	// A command that exited 0 finished its work even if ctx ended just after.
	if err == nil {
		e.logger.Debug("command succeeded",
			zap.String("message_id", msg.ID),
			zap.Duration("duration", elapsed),
			zap.String("stdout", stdout.String()),
			zap.String("stderr", stderr.String()))
		return nil
	}

	what := fmt.Sprintf("run %s for message %s", e.argv[0], msg.ID)
	output := "output not quoted" // it may quote the message
	if e.outputInErrors {
		output = fmt.Sprintf("stderr: %q; stdout: %q", stderr.String(), stdout.String())
	}
	if ce := e.logger.Check(zap.DebugLevel, "command failed"); ce != nil {
		ce.Write(zap.String("message_id", msg.ID), zap.Duration("duration", elapsed),
			zap.String("stdout", stdout.String()), zap.String("stderr", stderr.String()))
	}
	switch {
	case runCtx.Err() != nil && ctx.Err() == nil:
		return fmt.Errorf("%s: killed after %s (the handler's Timeout): %w; %s", what, e.timeout, runCtx.Err(), output)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: cancelled after %s: %w; %s", what, elapsed.Round(time.Millisecond), context.Cause(ctx), output)
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("%s: killed by signal %d (%s): %w; %s", what, ws.Signal(), ws.Signal(), err, output)
		}
		err = fmt.Errorf("%s: exit code %d: %w; %s", what, exitErr.ExitCode(), err, output)
		switch exitErr.ExitCode() {
		case ExitDeadLetter:
			return DeadLetter(fmt.Sprintf("exit code %d", ExitDeadLetter), err)
		case ExitUnavailable:
			return Unavailable(err, true)
		}
		return err
	}
	return fmt.Errorf("%s: %w; %s", what, err, output)
}

// Exit codes with a meaning of their own (sysexits.h's EX_DATAERR and
// EX_TEMPFAIL): ExitDeadLetter says the message can never succeed (it goes
// to the dead-letter queue at once), ExitUnavailable says the downstream
// is unavailable or overloaded (slow down; not the message's fault).
const (
	ExitDeadLetter  = 65
	ExitUnavailable = 75
)

// env is what the command inherits of the worker's environment plus the
// message's metadata. exec keeps the last value of a duplicated name, so
// ours win over inherited ones.
func (e *Exec) env(msg *message.Message) []string {
	env := append([]string(nil), e.environ...)
	env = append(env,
		"SQS_MESSAGE_ID="+msg.ID,
		"SQS_RECEIVE_COUNT="+strconv.Itoa(msg.ReceiveCount),
		"SQS_QUEUE_URL="+msg.QueueURL,
		"SQS_FIRST_RECEIVED_AT="+msg.FirstReceivedAt.UTC().Format(time.RFC3339),
	)
	if msg.GroupID != "" {
		env = append(env, "SQS_MESSAGE_GROUP_ID="+msg.GroupID)
	}
	names := make([]string, 0, len(msg.Attributes))
	for name := range msg.Attributes {
		names = append(names, name)
	}
	sort.Strings(names) // names that map to the same variable: the last in order wins, every time
	for _, name := range names {
		v, ok := msg.StringAttribute(name)
		// The kernel cannot pass a NUL inside an environment string.
		if !ok || strings.IndexByte(v, 0) >= 0 {
			continue
		}
		env = append(env, "SQS_ATTR_"+envName(name)+"="+v)
	}
	return env
}

// envName upper-cases name and replaces anything a shell would not accept
// in a variable name with '_'.
func envName(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// killGroup signals the process group led by pid. A group that is already
// gone counts as done, so exec does not report the cancellation as a failure
// of its own.
func killGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return fmt.Errorf("signal process group %d with %s: %w", pid, sig, err)
	}
	return nil
}

// capWriter keeps the first and last limit/2 bytes written, so both the
// start of the output and the final error line survive truncation. It never
// fails a write: the child must not see EPIPE because we stopped listening.
type capWriter struct {
	limit   int
	head    []byte
	tail    []byte
	dropped int64
}

func (w *capWriter) Write(p []byte) (int, error) {
	n := len(p)
	headMax := w.limit - w.limit/2
	if room := headMax - len(w.head); room > 0 {
		k := min(room, len(p))
		w.head = append(w.head, p[:k]...)
		p = p[k:]
	}
	tailMax := w.limit / 2
	w.tail = append(w.tail, p...)
	if excess := len(w.tail) - tailMax; excess > 0 && len(w.tail) > 2*tailMax {
		// Compact only when the slack is large, so writes stay amortised O(n).
		w.dropped += int64(excess)
		w.tail = append(w.tail[:0], w.tail[excess:]...)
	}
	return n, nil
}

func (w *capWriter) String() string {
	tail := w.tail
	dropped := w.dropped
	if excess := len(tail) - w.limit/2; excess > 0 {
		dropped += int64(excess)
		tail = tail[excess:]
	}
	if dropped == 0 {
		return string(w.head) + string(tail)
	}
	return fmt.Sprintf("%s…[%d bytes omitted]…%s", w.head, dropped, tail)
}
