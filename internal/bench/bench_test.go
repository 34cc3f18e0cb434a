package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.WrapTestMain(m)
}

// lineWriter sends progress lines to the test log.
type lineWriter struct{ t *testing.T }

func (w lineWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestSmoke runs every scenario once at a tiny scale, and the
// real-region path on a few, and checks only that every figure is there
// and finite: nothing here is about time.
func TestSmoke(t *testing.T) {
	tests := []struct {
		name      string
		rtt       time.Duration
		scenarios []string
		// want is how many rows each scenario must report.
		want map[string]int
	}{
		{name: "local", want: map[string]int{scenarioThroughput: 2, scenarioRequests: 1, scenarioBinary: 4, scenarioPeer: 2, scenarioIdle: 2,
			scenarioLongTail: 3, scenarioPickup: 2, scenarioHeartbeat: 2, scenarioFootprint: 2, scenarioLoad: 2, scenarioIntegrity: 2,
			scenarioBackpressure: 1, scenarioDrainThroughput: 2, scenarioDrainRSS: 2, scenarioReplicas: 1, scenarioHTTPBatch: 2}},
		{name: "rtt", rtt: 20 * time.Millisecond, scenarios: []string{scenarioThroughput, scenarioRequests, scenarioPeer, scenarioPickup},
			want: map[string]int{scenarioThroughput: 3, scenarioRequests: 1, scenarioPeer: 2, scenarioPickup: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Run(t.Context(), Options{
				RTT: tt.rtt, Scenarios: tt.scenarios, Scale: 0.001,
				WaitTime: time.Second, HeartbeatVisibility: 2 * time.Second, HeartbeatHold: 1, FootprintHold: 10 * time.Millisecond, IntegrityRuns: 2,
				IdleDuration: time.Second, BackpressureWarmup: time.Second, BackpressureSpan: time.Second,
				Progress: lineWriter{t},
			})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, row := range r.Rows {
				got[row.Scenario]++
				if math.IsNaN(row.Value) || math.IsInf(row.Value, 0) || math.IsNaN(row.LimitValue) || math.IsInf(row.LimitValue, 0) {
					t.Errorf("%s %q: value %v, limit %v: want finite numbers", row.Scenario, row.Figure, row.Value, row.LimitValue)
				}
				if row.Figure == "" || row.Limit == "" {
					t.Errorf("%s row %+v: figure or limit missing", row.Scenario, row)
				}
				if row.Result != "pass" && row.Result != "miss" && row.Result != "info" {
					t.Errorf("%s %q: result %q", row.Scenario, row.Figure, row.Result)
				}
			}
			for s, n := range tt.want {
				if got[s] != n {
					t.Errorf("scenario %s reported %d rows, want %d", s, got[s], n)
				}
			}
			var md bytes.Buffer
			r.Markdown(&md)
			if lines := strings.Count(md.String(), "\n| "); lines != len(r.Rows)+1 {
				t.Errorf("markdown has %d table lines for %d rows:\n%s", lines, len(r.Rows), md.String())
			}
			path := filepath.Join(t.TempDir(), "results.json")
			if err := r.WriteJSON(path); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var back Report
			if err := json.Unmarshal(b, &back); err != nil || len(back.Rows) != len(r.Rows) {
				t.Errorf("JSON does not read back (%v): %s", err, b)
			}
		})
	}
}

func TestSimulate(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name      string
		durations []time.Duration
		slots     int
		makespan  time.Duration
	}{
		{name: "one slot adds up", durations: ms(1, 2, 3), slots: 1, makespan: 6 * time.Millisecond},
		{name: "a long one caps the run", durations: ms(30, 1, 1, 1), slots: 2, makespan: 30 * time.Millisecond},
		{name: "in order, not sorted", durations: ms(1, 1, 30), slots: 2, makespan: 31 * time.Millisecond},
		{name: "more slots than messages", durations: ms(5, 7), slots: 10, makespan: 7 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := simulate(tt.durations, tt.slots).makespan; got != tt.makespan {
				t.Errorf("makespan %s, want %s", got, tt.makespan)
			}
		})
	}
}

func TestHandlerTimeIsSeededPerIndex(t *testing.T) {
	again := handlerTime
	if handlerTime(4, 7) != again(4, 7) || handlerTime(4, 7) == handlerTime(4, 8) || handlerTime(4, 7) == handlerTime(5, 7) {
		t.Error("handler times must depend on seed and index only")
	}
	// The median of many draws is near 50ms.
	below := 0
	for i := range 10000 {
		if handlerTime(4, i) < 50*time.Millisecond {
			below++
		}
	}
	if below < 4800 || below > 5200 {
		t.Errorf("%d of 10000 draws below 50ms, want about half", below)
	}
}

func TestUnknownScenarioNamesTheChoices(t *testing.T) {
	_, err := Run(t.Context(), Options{Scenarios: []string{"no-such-scenario"}})
	if err == nil || !strings.Contains(err.Error(), `unknown scenario "no-such-scenario"`) || !strings.Contains(err.Error(), strings.Join(ScenarioNames(), ",")) {
		t.Errorf("Run error %v; want one naming the scenario and every choice", err)
	}
}
