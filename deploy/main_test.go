// Package deploy_test checks what an operator copies from this repository
// (the image, the compose stack, the Kubernetes base, the dashboard, the
// alert rules and their runbooks) against the worker binary itself, so
// that none of it can drift from the flags, ports, probes and metrics the
// binary has.
package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// root is the repository root, seen from this package's directory.
const root = ".."

var (
	workerBin string
	server    *sqstest.Server
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m, buildWorker, testkit.StartServer(&server))
}

// buildWorker builds the worker the way the Dockerfile does (see
// TestImageBinary), into a temporary directory removed after the tests.
func buildWorker() (func(), error) {
	dir, err := os.MkdirTemp("", "sqsworker-deploy-test")
	if err != nil {
		return nil, err
	}
	tearDown := func() { _ = os.RemoveAll(dir) }
	workerBin = filepath.Join(dir, "worker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The binary the image would hold: the checks run against what an
	// operator deploys.
	return tearDown, buildImageBinary(ctx, workerBin)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// helpFlag is one flag as `worker <cmd> --help` lists it: "--name (ENV)".
var helpFlag = regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+) \((SQSWORKER_[A-Z0-9_]+)\)`)

// commandHelp is what `worker <cmd> --help` says a subcommand takes.
type commandHelp struct {
	exists bool
	flags  map[string]string // flag name → its SQSWORKER_ variable
	envs   map[string]string // variable → flag name
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]commandHelp{}
)

// help runs `worker <cmd> --help` once per subcommand.
func help(t *testing.T, cmd string) commandHelp {
	t.Helper()
	helpMu.Lock()
	defer helpMu.Unlock()
	if h, ok := helpCache[cmd]; ok {
		return h
	}
	c := exec.Command(workerBin, cmd, "--help")
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	var exitErr *exec.ExitError
	h := commandHelp{flags: map[string]string{}, envs: map[string]string{}}
	switch {
	case err == nil:
		h.exists = true
	case errors.As(err, &exitErr) && strings.Contains(stderr.String(), "unknown subcommand"):
	default:
		t.Fatalf("worker %s --help: %v\n%s", cmd, err, stderr.String())
	}
	for _, m := range helpFlag.FindAllStringSubmatch(stdout.String(), -1) {
		h.flags[m[1]] = m[2]
		h.envs[m[2]] = m[1]
	}
	helpCache[cmd] = h
	return h
}

// invocation is one way a deployment file runs the worker: its arguments
// (the subcommand first, or run when they start with a flag) and the
// environment it sets.
type invocation struct {
	where string // "docker-compose.yml: service worker"
	args  []string
	env   map[string]string
}

// subcommand is the subcommand args run, and the args after it.
func (inv invocation) subcommand() (string, []string) {
	if len(inv.args) > 0 && !strings.HasPrefix(inv.args[0], "-") {
		return inv.args[0], inv.args[1:]
	}
	return "run", inv.args
}

// flagValue is the value args give --name (the last one wins, as in the
// flag package), and whether they give it.
func flagValue(args []string, name string) (string, bool) {
	val, found := "", false
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if a == args[i] {
			continue
		}
		k, v, hasValue := strings.Cut(a, "=")
		if k != name {
			continue
		}
		found = true
		if hasValue {
			val = v
		} else if i+1 < len(args) {
			val = args[i+1]
			i++
		}
	}
	return val, found
}

// setting is what an invocation sets --name to, by flag or by its
// SQSWORKER_ variable (the flag wins, as in the binary).
func (inv invocation) setting(name string) (string, bool) {
	_, args := inv.subcommand()
	if v, ok := flagValue(args, name); ok {
		return v, true
	}
	v, ok := inv.env["SQSWORKER_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))]
	return v, ok
}

// checkAgainstHelp fails the test for every flag and SQSWORKER_ variable
// inv sets that the binary's help does not list.
func checkAgainstHelp(t *testing.T, inv invocation) {
	t.Helper()
	cmd, args := inv.subcommand()
	h := help(t, cmd)
	if !h.exists {
		t.Errorf("%s runs `worker %s`, which this binary does not have", inv.where, cmd)
		return
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if _, ok := h.flags[name]; !ok {
			t.Errorf("%s passes --%s, which `worker %s --help` does not list", inv.where, name, cmd)
		}
	}
	for k := range inv.env {
		if !strings.HasPrefix(k, "SQSWORKER_") {
			continue
		}
		if _, ok := h.envs[k]; !ok {
			t.Errorf("%s sets %s, which `worker %s --help` does not list", inv.where, k, cmd)
		}
	}
}

// metricsPort is the port an invocation serves /metrics, /healthz and
// /readyz on: its --metrics-addr, else the binary's default.
func metricsPort(t *testing.T, inv invocation) string {
	t.Helper()
	addr, ok := inv.setting("metrics-addr")
	if !ok {
		addr = defaultOf(t, "run", "metrics-addr")
	}
	i := strings.LastIndex(addr, ":")
	if i < 0 || addr[i+1:] == "" || addr[i+1:] == "0" {
		t.Fatalf("%s: --metrics-addr %q has no fixed port for probes and scrapes", inv.where, addr)
	}
	return addr[i+1:]
}

// defaultOf is a flag's default as `worker <cmd> --help` shows it.
func defaultOf(t *testing.T, cmd, name string) string {
	t.Helper()
	out, err := exec.Command(workerBin, cmd, "--help").Output()
	if err != nil {
		t.Fatalf("worker %s --help: %v", cmd, err)
	}
	re := regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(name) + ` \(.*\)\n\s+.*\(default ([^)]*)\)\s*$`)
	m := re.FindSubmatch(out)
	if m == nil {
		t.Fatalf("worker %s --help shows no default for --%s", cmd, name)
	}
	return string(m[1])
}

func durationSetting(t *testing.T, inv invocation, name string) time.Duration {
	t.Helper()
	v, ok := inv.setting(name)
	if !ok {
		v = defaultOf(t, "run", name)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: --%s %q: %v", inv.where, name, v, err)
	}
	return d
}

func intSetting(t *testing.T, inv invocation, name string) int {
	t.Helper()
	v, ok := inv.setting(name)
	if !ok {
		v = defaultOf(t, "run", name)
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil {
		t.Fatalf("%s: --%s %q: %v", inv.where, name, v, err)
	}
	return n
}

func itoa(n int) string { return fmt.Sprint(n) }

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
