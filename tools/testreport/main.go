// Command testreport reads `go test -json` on stdin and prints a short
// report: one line per package, the "figures:" lines that tests log (what
// the end-to-end tests count: lost, duplicates, redeliveries, calls per
// round), and the whole output of every test or package that failed. It
// exits 1 if anything failed, so `make test` fails with it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	os.Exit(report(os.Stdin, os.Stdout))
}

func report(in io.Reader, out io.Writer) int {
	outputs := map[string][]string{} // package + "\x00" + test → output lines
	failed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintln(out, sc.Text()) // build errors and the like come as plain text
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "output":
			outputs[key] = append(outputs[key], e.Output)
			if e.Test != "" && strings.Contains(e.Output, "figures:") {
				_, fig, _ := strings.Cut(e.Output, "figures:")
				fmt.Fprintf(out, "    %s: %s\n", e.Test, strings.TrimSpace(fig))
			}
		case "fail":
			failed = true
			if e.Test != "" {
				fmt.Fprintf(out, "--- FAIL: %s (%s)\n%s", e.Test, e.Package, strings.Join(outputs[key], ""))
			} else {
				fmt.Fprintf(out, "%sFAIL\t%s\t%.1fs\n", strings.Join(outputs[key], ""), e.Package, e.Elapsed)
			}
			delete(outputs, key)
		case "pass":
			if e.Test == "" {
				fmt.Fprintf(out, "ok  \t%s\t%.1fs\n", e.Package, e.Elapsed)
			}
			delete(outputs, key)
		case "skip":
			if e.Test == "" {
				fmt.Fprintf(out, "?   \t%s\t[no test files]\n", e.Package)
			}
			delete(outputs, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testreport:", err)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}
