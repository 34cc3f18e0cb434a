package sqstest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// DefaultReadyTimeout is how long StartProcess waits for the ready line
// unless told otherwise.
const DefaultReadyTimeout = 30 * time.Second

// keptLogBytes bounds the output a Process keeps: past it the oldest lines
// are dropped.
const keptLogBytes = 16 << 20

// ProcessOptions say what StartProcess runs and how it knows the program is
// ready.
type ProcessOptions struct {
	// Name names the program in errors: "worker", "handler".
	Name string
	// Path and Args are the program and its arguments.
	Path string
	Args []string
	// Env is added to this process's environment; for a key given twice
	// the later value wins.
	Env []string
	// Stdout reads the program's standard output instead of its standard
	// error; the stream not read goes to this process's standard error.
	Stdout bool
	// Ready picks the line that says the program is ready; StartProcess
	// returns once it is read. Nil returns at once.
	Ready func(line string) bool
	// ReadyTimeout bounds the wait for the ready line. Defaults to
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Line, when set, sees every line read, in order, from one goroutine.
	Line func(line string)
}

// Process is a program started by StartProcess. It keeps the lines the
// program writes, can be signalled and waited for; Stop and Kill are safe
// to call more than once and after the program has exited.
type Process struct {
	// ReadyLine is the line ProcessOptions.Ready picked, read at ReadyAt.
	ReadyLine string
	ReadyAt   time.Time

	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the program has exited and its output is read
	exit int

	mu    sync.Mutex
	lines []string
	size  int
}

// StartProcess starts the program and waits for its ready line. When the
// program exits first, or the line does not come in time, it returns an
// error with the program's last lines (and kills it).
func StartProcess(o ProcessOptions) (*Process, error) {
	cmd := exec.Command(o.Path, o.Args...)
	cmd.Env = append(os.Environ(), o.Env...)
	// A grandchild that holds the output open must not hold up Wait.
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	if o.Stdout {
		cmd.Stdout, cmd.Stderr = pw, os.Stderr
	} else {
		cmd.Stderr = pw
	}
	if err := cmd.Start(); err != nil {
		_ = pw.Close()
		return nil, fmt.Errorf("start the %s (%s): %w", o.Name, o.Path, err)
	}
	p := &Process{name: o.Name, cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		p.read(pr, o, ready)
	}()
	go func() {
		_ = cmd.Wait()
		p.exit = cmd.ProcessState.ExitCode()
		_ = pw.Close()
		<-read
		close(p.done)
	}()
	if o.Ready == nil {
		return p, nil
	}
	within := o.ReadyTimeout
	if within <= 0 {
		within = DefaultReadyTimeout
	}
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case p.ReadyLine = <-ready:
		p.ReadyAt = time.Now()
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("the %s exited at start with status %d; its last lines:\n%s", o.Name, p.exit, p.LastLines(40))
	case <-t.C:
		p.Kill()
		return nil, fmt.Errorf("the %s was not ready within %s; its last lines:\n%s", o.Name, within, p.LastLines(40))
	}
}

func (p *Process) read(r io.Reader, o ProcessOptions, ready chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	waiting := o.Ready != nil
	for sc.Scan() {
		line := sc.Text()
		p.keep(line)
		if o.Line != nil {
			o.Line(line)
		}
		if waiting && o.Ready(line) {
			waiting = false
			ready <- line
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (p *Process) keep(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, line)
	p.size += len(line) + 1
	drop := 0
	for p.size > keptLogBytes && drop < len(p.lines)-1 {
		p.size -= len(p.lines[drop]) + 1
		drop++
	}
	p.lines = p.lines[drop:]
}

// Logs is every line the program wrote that is kept (the last 16 MiB).
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lines) == 0 {
		return ""
	}
	return strings.Join(p.lines, "\n") + "\n"
}

// LastLines is the program's last n lines.
func (p *Process) LastLines(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-n):], "\n")
}

// PID is the program's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the program has exited and its output is read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the program has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the program's exit status once Done is closed; -1 when a
// signal ended it.
func (p *Process) ExitCode() int {
	<-p.done
	return p.exit
}

// Signal sends sig, unless the program has exited.
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal the %s: %w", p.name, err)
	}
	return nil
}

// Wait waits up to within for the program to exit and returns its status.
func (p *Process) Wait(within time.Duration) (int, error) {
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-p.done:
		return p.exit, nil
	case <-t.C:
		return -1, fmt.Errorf("the %s did not exit within %s", p.name, within)
	}
}

// Stop sends sig and waits up to within for the exit, returning its
// status; past within it kills the program and says so.
func (p *Process) Stop(sig os.Signal, within time.Duration) (int, error) {
	if err := p.Signal(sig); err != nil {
		return -1, err
	}
	code, err := p.Wait(within)
	if err != nil {
		p.Kill()
		return p.exit, fmt.Errorf("%w of %s; killed it", err, sig)
	}
	return code, nil
}

// Kill ends the program at once and waits for it; it is the cleanup of
// every error path.
func (p *Process) Kill() {
	if p == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
