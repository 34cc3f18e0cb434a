package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteREADME: the table between the markers is replaced by one row per
// figure with a column per report, and nothing outside the markers moves.
func TestWriteREADME(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "README.md")
	before := "# x\n\nintro\n\n" + readmeStart + "\nold | table\n" + readmeEnd + "\n\nafter\n"
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	local := &Report{Mode: "local", CPUs: 2, Rows: []Row{
		{Scenario: "a", Figure: "ratio", Value: 1.5, Unit: "ratio", Goal: "≥ 1.000", Limit: "raw | loop", Result: "pass"},
		{Scenario: "b", Figure: "only local", Value: 3, Unit: "ratio", Result: "info"},
	}}
	rtt := &Report{Mode: "rtt", RTT: "20ms", CPUs: 2, Rows: []Row{
		{Scenario: "a", Figure: "ratio", Value: 0.5, Unit: "ratio", Goal: "≥ 1.000", Limit: "raw | loop", Result: "miss", Notes: "slow"},
	}}
	if err := WriteREADME(path, local, rtt); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"# x\n\nintro\n\n" + readmeStart,
		"| scenario: figure | goal | limit or baseline (same run) | local | 20ms round trips |",
		"| `a`: ratio | ≥ 1.000 | raw \\| loop | 1.500 | 0.500: **miss** (slow) |",
		"| `b`: only local | — |  | 3.000 | — |",
		readmeEnd + "\n\nafter\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("README lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old | table") {
		t.Error("the old table is still there")
	}
	if err := os.WriteFile(path, []byte("no markers"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteREADME(path, local); err == nil {
		t.Error("WriteREADME on a file without markers = nil; want an error")
	}
}
