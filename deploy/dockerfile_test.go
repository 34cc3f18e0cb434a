package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sqsworker/sqsworker/internal/buildinfo"
	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper-cased: FROM, RUN, …
	args string
	line int
}

// stage is one FROM and the instructions up to the next.
type stage struct {
	base, name string
	ins        []instruction
}

func parseDockerfile(text string) (args map[string]string, stages []stage, err error) {
	args = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, rest, _ := strings.Cut(cur.String(), " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(rest), line: start}
		cur.Reset()
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			s := stage{base: os.Expand(f[0], func(k string) string { return args[k] })}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
		case len(stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case len(stages) == 0:
			return nil, nil, fmt.Errorf("dockerfile line %d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	return args, stages, nil
}

func readDockerfile(t *testing.T) (map[string]string, []stage) {
	t.Helper()
	args, stages, err := parseDockerfile(string(readFile(t, "Dockerfile")))
	if err != nil {
		t.Fatal(err)
	}
	return args, stages
}

// imageBuild is the Dockerfile's go build of ./cmd/worker.
func imageBuild() (goBuild, error) {
	text, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return goBuild{}, err
	}
	_, stages, err := parseDockerfile(string(text))
	if err != nil {
		return goBuild{}, err
	}
	for _, s := range stages {
		for _, run := range s.all("RUN") {
			for _, g := range goBuilds(run.args) {
				if g.pkg == "./cmd/worker" {
					return g, nil
				}
			}
		}
	}
	return goBuild{}, errors.New("no RUN of the Dockerfile builds ./cmd/worker")
}

// Stamped into the binary the tests build the way the image does.
const (
	imageVersion  = "v0.0.0-imagetest"
	imageRevision = "feedface"
)

// buildImageBinary builds the worker to path with the Dockerfile's
// environment, flags and -ldflags (VERSION and REVISION set).
func buildImageBinary(ctx context.Context, path string) error {
	b, err := imageBuild()
	if err != nil {
		return err
	}
	ldflags := strings.NewReplacer("${VERSION}", imageVersion, "${REVISION}", imageRevision).Replace(b.ldflags)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags="+b.tags, "-ldflags="+ldflags, "-o", path, b.pkg)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", build, err, out)
	}
	return nil
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s stage) last(cmd string) (instruction, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return instruction{}, false
	}
	return all[len(all)-1], true
}

// runtimeBase: the images a final stage may use. Both have no shell;
// distroless/static brings CA certificates and a nonroot user, scratch
// needs the certificates copied in.
func runtimeBase(base string) bool {
	return base == "scratch" || strings.HasPrefix(base, "gcr.io/distroless/static")
}

// TestDockerfile checks what the image build would make, without Docker:
// a multi-stage build of a static, trimmed binary; runtime stages on
// distroless/static or scratch, with a numeric non-root user and an
// exec-form entrypoint that names the binary copied in; the Go version the
// module asks for; the metrics address on every interface, its port
// exposed.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	args, stages := readDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a runtime stage", len(stages))
	}
	gomod := string(readFile(t, "go.mod"))
	if m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod); m == nil || args["GO_VERSION"] != m[1] {
		t.Errorf("Dockerfile ARG GO_VERSION=%s, want go.mod's go %v", args["GO_VERSION"], m)
	}

	final := stages[len(stages)-1]
	if !runtimeBase(final.base) {
		t.Errorf("the final stage (the image `docker build .` makes) is FROM %s, want gcr.io/distroless/static… or scratch", final.base)
	}
	built := map[string]string{} // -o path → the package it builds, over all RUNs
	for _, s := range stages {
		for _, run := range s.all("RUN") {
			for _, b := range goBuilds(run.args) {
				built[b.out] = b.pkg
				if !b.static || !b.trimpath {
					t.Errorf("Dockerfile line %d builds %s without CGO_ENABLED=0 and -trimpath: %s", run.line, b.pkg, b.cmd)
				}
			}
		}
	}
	if built["/out/worker"] != "./cmd/worker" {
		t.Fatalf("no RUN builds ./cmd/worker to /out/worker (builds: %v)", built)
	}
	if b, err := imageBuild(); err != nil || b.tags != sqstest.WorkerTags {
		t.Errorf("the Dockerfile builds ./cmd/worker with -tags %q (%v), want %q, the tags the tests and the Makefile build it with",
			b.tags, err, sqstest.WorkerTags)
	}
	for _, s := range stages {
		if !runtimeBase(s.base) {
			continue
		}
		where := "stage " + s.name
		if runs := s.all("RUN"); len(runs) > 0 {
			t.Errorf("%s: line %d: RUN in a stage with no shell", where, runs[0].line)
		}
		if s.base == "scratch" && !strings.Contains(strings.Join(instructionArgs(s.all("COPY")), "\n"), "ca-certificates") {
			t.Errorf("%s is FROM scratch without CA certificates copied in: TLS to AWS would fail", where)
		}
		user, ok := s.last("USER")
		if !ok || !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user.args) {
			t.Errorf("%s: USER %q, want a numeric non-root uid[:gid] (runAsNonRoot checks numbers)", where, user.args)
		}
		ep, ok := s.last("ENTRYPOINT")
		var argv []string
		if !ok || json.Unmarshal([]byte(ep.args), &argv) != nil || len(argv) == 0 {
			t.Errorf("%s: ENTRYPOINT %q, want the exec form [\"/path\", …]: the shell form needs a shell and hides signals", where, ep.args)
			continue
		}
		copied := false
		for _, c := range s.all("COPY") {
			f := strings.Fields(c.args)
			if len(f) == 3 && strings.HasPrefix(f[0], "--from=") && f[2] == argv[0] {
				if _, ok := built[f[1]]; ok {
					copied = true
				}
			}
		}
		if !copied {
			t.Errorf("%s: ENTRYPOINT runs %s, which no COPY --from brings from a go build", where, argv[0])
		}
	}
	ep, _ := final.last("ENTRYPOINT")
	if !strings.Contains(ep.args, "/worker") {
		t.Errorf("the final stage's ENTRYPOINT %s does not run the worker", ep.args)
	}
	// In a container the metrics address listens on every interface, or
	// neither Prometheus nor the probes could reach it.
	addr := config.DefaultMetricsAddr
	for _, env := range final.all("ENV") {
		if v, ok := strings.CutPrefix(env.args, "SQSWORKER_METRICS_ADDR="); ok {
			addr = v
		}
	}
	if !allInterfaces(addr) {
		t.Errorf("the final stage's metrics address is %q, want ENV SQSWORKER_METRICS_ADDR=:PORT: in a container it must listen on every interface", addr)
	}
	_, port, _ := net.SplitHostPort(addr)
	if expose, _ := final.last("EXPOSE"); !strings.Contains(" "+expose.args+" ", " "+port+" ") {
		t.Errorf("the final stage EXPOSEs %q, want the metrics port %s (--metrics-addr %s)", expose.args, port, addr)
	}
}

func instructionArgs(ins []instruction) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.args
	}
	return out
}

// goBuild is one `go build` in a RUN.
type goBuild struct {
	cmd, out, pkg, ldflags, tags string
	static, trimpath             bool
}

func goBuilds(run string) []goBuild {
	var out []goBuild
	for _, part := range strings.Split(run, "&&") {
		part = strings.TrimSpace(part)
		if !strings.Contains(part, "go build") {
			continue
		}
		b := goBuild{cmd: part, static: strings.Contains(part, "CGO_ENABLED=0"), trimpath: strings.Contains(part, "-trimpath")}
		if m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(part); m != nil {
			b.out = m[1]
		}
		if m := regexp.MustCompile(`-ldflags="([^"]*)"`).FindStringSubmatch(part); m != nil {
			b.ldflags = m[1]
		}
		if m := regexp.MustCompile(`-tags[= ](\S+)`).FindStringSubmatch(part); m != nil {
			b.tags = m[1]
		}
		f := strings.Fields(part)
		b.pkg = f[len(f)-1]
		out = append(out, b)
	}
	return out
}

// TestImageBinary checks the binary the tests run, which TestMain built
// the way the Dockerfile does (its environment, flags and -ldflags, with
// VERSION and REVISION set): a static ELF with no interpreter, under 25
// MB, whose `worker version` names the stamped version and commit and
// says it was built with CGO_ENABLED=0, -trimpath and the worker's tags.
func TestImageBinary(t *testing.T) {
	t.Parallel()
	bin := workerBin
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the image's binary has a dynamic loader (PT_INTERP): it would not run on distroless/static")
		}
	}
	if st, err := os.Stat(bin); err != nil || st.Size() > 25<<20 {
		t.Errorf("the image's binary is %d bytes, want under 25 MB (%v)", st.Size(), err)
	} else {
		t.Logf("figures: image_binary_bytes=%d", st.Size())
	}
	var out bytes.Buffer
	v := exec.Command(bin, "version")
	v.Stdout = &out
	if err := v.Run(); err != nil {
		t.Fatalf("worker version: %v", err)
	}
	for _, want := range []string{"worker " + imageVersion + "\n", imageRevision, "CGO_ENABLED=0", "-trimpath=true", "-tags=" + sqstest.WorkerTags} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("worker version says\n%s\nwant %q in it", out.String(), want)
		}
	}
	js, err := exec.Command(bin, "version", "--json").Output()
	var info buildinfo.Info
	if err != nil || json.Unmarshal(js, &info) != nil || info.Version != imageVersion || info.Revision != imageRevision || info.Setting("CGO_ENABLED") != "0" {
		t.Errorf("worker version --json = %s (%v): want the stamped version and commit, CGO_ENABLED=0", js, err)
	}
}

// TestDockerignore: the build context keeps what the build copies and
// leaves out the rest (.git, node_modules, build output).
func TestDockerignore(t *testing.T) {
	t.Parallel()
	var patterns []string
	for _, l := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	// Docker's matching: a pattern matches a path or one of its parent
	// directories; ** matches any number of directories.
	var res []*regexp.Regexp
	for _, pat := range patterns {
		re := regexp.QuoteMeta(pat)
		re = strings.ReplaceAll(re, `\*\*/`, "(.*/)?")
		re = strings.ReplaceAll(re, `\*`, "[^/]*")
		re = strings.ReplaceAll(re, `\?`, "[^/]")
		res = append(res, regexp.MustCompile("^"+re+"$"))
	}
	ignored := func(p string) bool {
		parts := strings.Split(p, "/")
		for i := 1; i <= len(parts); i++ {
			for _, re := range res {
				if re.MatchString(strings.Join(parts[:i], "/")) {
					return true
				}
			}
		}
		return false
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/worker/main.go", "internal/worker/worker.go", "examples/handler/main.go", "examples/producer/main.go"} {
		if ignored(p) {
			t.Errorf(".dockerignore leaves out %s, which the image build needs", p)
		}
	}
	for _, p := range []string{".git/HEAD", "tools/sqs-server/node_modules/fauxqs/package.json", "bin/worker"} {
		if !ignored(p) {
			t.Errorf(".dockerignore sends %s to the build, which does not need it", p)
		}
	}
}
