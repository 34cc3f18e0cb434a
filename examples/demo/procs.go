package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a program the demo started. stop and kill are safe to call more
// than once, and after the program has exited.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the program has exited and its output is read
	exit int
}

// startChild starts cmd, whose stdout and stderr the caller has set up.
// closers are closed once the program has exited (the write ends of pipes,
// so their readers see EOF).
func startChild(name string, cmd *exec.Cmd, closers ...io.Closer) (*child, error) {
	if err := cmd.Start(); err != nil {
		for _, c := range closers {
			_ = c.Close()
		}
		return nil, fmt.Errorf("start %s (%s): %w", name, cmd.Path, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		c.exit = cmd.ProcessState.ExitCode()
		for _, cl := range closers {
			_ = cl.Close()
		}
		close(c.done)
	}()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to within for the exit, then kills the
// program. It returns the exit status (-1 when killed by a signal).
func (c *child) stop(within time.Duration) (int, error) {
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.done:
		return c.exit, nil
	case <-time.After(within):
		c.kill()
		return c.exit, fmt.Errorf("%s did not exit within %s of SIGTERM; killed it", c.name, within)
	}
}

// kill ends the program at once; it is the cleanup of every error path.
func (c *child) kill() {
	if c == nil || c.exited() {
		return
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// startHandler starts the example handler on a free port and returns it
// with the URL it printed as its first line.
func startHandler(bin string) (*child, string, error) {
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	h, err := startChild("handler", cmd, pw)
	if err != nil {
		return nil, "", err
	}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case line := <-first:
		url, ok := strings.CutPrefix(line, "listening ")
		if !ok {
			h.kill()
			return nil, "", fmt.Errorf("handler printed %q, want `listening http://ADDR`", line)
		}
		return h, url, nil
	case <-time.After(15 * time.Second):
		h.kill()
		return nil, "", errors.New("handler did not print its address within 15s")
	}
}

// workerLog reads the worker's JSON log: it finds the "worker started"
// line, passes warnings, errors and anything that is not JSON (a crash)
// through to the demo's stderr, and keeps the last lines for a failure
// report.
type workerLog struct {
	started chan startedLine
	all     bool // pass every line through
	mu      sync.Mutex
	last    []string
}

type startedLine struct {
	at          time.Time
	metricsAddr string
}

const keptLogLines = 40

func (l *workerLog) scan(r io.Reader, out io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	announced := false
	for sc.Scan() {
		line := sc.Text()
		l.keep(line)
		var e struct {
			Level       string `json:"level"`
			Msg         string `json:"msg"`
			MetricsAddr string `json:"metrics_addr"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			fmt.Fprintln(out, "worker | "+line)
			continue
		}
		if e.Msg == "worker started" && !announced {
			announced = true
			l.started <- startedLine{at: time.Now(), metricsAddr: e.MetricsAddr}
		}
		if l.all || (e.Level != "debug" && e.Level != "info") {
			fmt.Fprintln(out, "worker | "+line)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (l *workerLog) keep(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = append(l.last, line)
	if len(l.last) > keptLogLines {
		l.last = l.last[len(l.last)-keptLogLines:]
	}
}

func (l *workerLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, "\n")
}

// startWorker starts the worker binary with args and env and waits for
// its "worker started" line.
func startWorker(bin string, args, env []string, verbose bool) (*child, *workerLog, startedLine, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	w, err := startChild("worker", cmd, pw)
	if err != nil {
		return nil, nil, startedLine{}, err
	}
	log := &workerLog{started: make(chan startedLine, 1), all: verbose}
	go log.scan(pr, os.Stderr)
	select {
	case s := <-log.started:
		return w, log, s, nil
	case <-w.done:
		err = fmt.Errorf("worker exited at start with status %d; its log:\n%s", w.exit, log.tail())
	case <-time.After(30 * time.Second):
		w.kill()
		err = fmt.Errorf("worker did not log \"worker started\" within 30s; its log:\n%s", log.tail())
	}
	return nil, nil, startedLine{}, err
}
