package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:9: figures: lost=0 duplicates=0\n"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:10: chatter\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:3: want 1, got 2\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestB"}`,
		`{"Action":"fail","Package":"p","Elapsed":1.5}`,
		`{"Action":"skip","Package":"q"}`,
		`{"Action":"pass","Package":"r","Elapsed":0.2}`,
	}, "\n")
	var out strings.Builder
	if code := report(strings.NewReader(in), &out); code != 1 {
		t.Errorf("exit code %d, want 1 (a test failed)", code)
	}
	got := out.String()
	for _, want := range []string{"TestA: lost=0 duplicates=0", "--- FAIL: TestB (p)\n    b_test.go:3: want 1, got 2", "FAIL\tp\t1.5s", "?   \tq", "ok  \tr\t0.2s"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "chatter") {
		t.Errorf("a passing test's other output was printed:\n%s", got)
	}
	if code := report(strings.NewReader(`{"Action":"pass","Package":"r"}`), &out); code != 0 {
		t.Errorf("exit code %d for all passing, want 0", code)
	}
}
