package deploy_test

import (
	"regexp"
	"strings"
	"testing"
)

// sections splits a Markdown document at its ### headings.
func sections(doc string) map[string]string {
	out := map[string]string{}
	var name string
	for _, l := range strings.Split(doc, "\n") {
		if h, ok := strings.CutPrefix(l, "### "); ok {
			name = strings.TrimSpace(h)
			continue
		}
		if strings.HasPrefix(l, "## ") {
			name = ""
		}
		if name != "" {
			out[name] += l + "\n"
		}
	}
	return out
}

var (
	codeSpan   = regexp.MustCompile("`([^`]+)`")
	inPageLink = regexp.MustCompile(`\]\(#([^)]+)\)`)
)

// workerCommands are the `worker …` command lines a document shows.
func workerCommands(doc string) [][]string {
	var out [][]string
	for _, m := range codeSpan.FindAllStringSubmatch(doc, -1) {
		f := strings.Fields(m[1])
		if len(f) >= 2 && f[0] == "worker" && !strings.HasPrefix(f[1], "-") {
			out = append(out, f[1:])
		}
	}
	return out
}

// TestOperationsGuide: one runbook section per alert, each saying what the
// alert means, how to confirm it (a metric and a `worker stats` call) and
// what to do; in-page links lead somewhere; and the worker commands it
// shows use flags the binary has.
func TestOperationsGuide(t *testing.T) {
	t.Parallel()
	doc := string(readFile(t, "docs/operations.md"))
	secs := sections(doc)
	for _, r := range alertRules(t) {
		s, ok := secs[r.Alert]
		if !ok {
			t.Errorf("docs/operations.md has no section ### %s", r.Alert)
			continue
		}
		for _, want := range []string{"**What it means.**", "**Confirm.**", "**What to do.**", "sqsworker_", "`worker stats"} {
			if !strings.Contains(s, want) {
				t.Errorf("the runbook of %s lacks %q", r.Alert, want)
			}
		}
	}
	anchors := markdownAnchors(doc)
	for _, m := range inPageLink.FindAllStringSubmatch(doc, -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/operations.md links to #%s, which is no heading of it", m[1])
		}
	}
	checkCommands(t, "docs/operations.md", doc)
}

// checkCommands checks the flags of every `worker <subcommand> …` a
// document shows against that subcommand's help.
func checkCommands(t *testing.T, where, doc string) {
	t.Helper()
	for _, c := range workerCommands(doc) {
		h := help(t, c[0])
		if !h.exists {
			t.Errorf("%s shows `worker %s`: no such subcommand", where, strings.Join(c, " "))
			continue
		}
		for _, a := range c[1:] {
			if name, ok := strings.CutPrefix(a, "--"); ok {
				name, _, _ = strings.Cut(name, "=")
				if _, ok := h.flags[name]; !ok {
					t.Errorf("%s shows `worker %s`: --%s is not in `worker %s --help`", where, strings.Join(c, " "), name, c[0])
				}
			}
		}
	}
}

// TestREADMEPointsAtTheDeploymentFiles: the README's Deploying section
// names each file an operator starts from.
func TestREADMEPointsAtTheDeploymentFiles(t *testing.T) {
	t.Parallel()
	readme := string(readFile(t, "README.md"))
	_, deploying, ok := strings.Cut(readme, "\n## Deploying\n")
	if !ok {
		t.Fatal("README.md has no ## Deploying section")
	}
	deploying, _, _ = strings.Cut(deploying, "\n## ")
	for _, f := range []string{"Dockerfile", "docker-compose.yml", "deploy/kubernetes/", "deploy/monitoring/", "docs/operations.md"} {
		if !strings.Contains(deploying, f) {
			t.Errorf("README.md's Deploying section does not point at %s", f)
		}
		if !fileExists(root + "/" + strings.TrimSuffix(f, "/")) {
			t.Errorf("README.md's Deploying section points at %s, which does not exist", f)
		}
	}
	checkCommands(t, "README.md", deploying)
}
