package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Row is one figure beside its goal and its limit or baseline measured in
// the same run.
type Row struct {
	// Scenario is the name of the scenario that measured it.
	Scenario string `json:"scenario"`
	// Figure names what Value measures.
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	// Goal is what the figure must reach, "" when it has none.
	Goal string `json:"goal,omitempty"`
	// Limit is the limit or baseline measured in the same run, in words;
	// LimitValue is its number (NaN-free; 0 when there is none).
	Limit      string  `json:"limit"`
	LimitValue float64 `json:"limit_value"`
	// Result is pass, miss, or info (no goal).
	Result string `json:"result"`
	Notes  string `json:"notes,omitempty"`
}

// goal is a figure's goal: at most (op "≤"), at least ("≥") or exactly ("=") v.
type goal struct {
	op string
	v  float64
	// limitBelow, when positive, is a second condition, on the row's
	// limit value: a figure that is only worth its goal beside another,
	// measured in the same run (throughput, beside the errors it caused).
	// limitText names it in the goal column.
	limitBelow float64
	limitText  string
}

func atMost(v float64) *goal  { return &goal{op: "≤", v: v} }
func atLeast(v float64) *goal { return &goal{op: "≥", v: v} }
func exactly(v float64) *goal { return &goal{op: "=", v: v} }

// andLimitBelow adds the second condition: the row's limit value must be
// below v; text says what that value is.
func (g *goal) andLimitBelow(v float64, text string) *goal {
	g.limitBelow, g.limitText = v, text
	return g
}

func (g *goal) metBoth(x, limitValue float64) bool {
	return g.met(x) && (g.limitBelow <= 0 || limitValue < g.limitBelow)
}

func (g *goal) met(x float64) bool {
	switch g.op {
	case "≤":
		return x <= g.v
	case "≥":
		return x >= g.v
	default:
		return x == g.v
	}
}

// add appends a row, judging value against g when there is a goal.
func (e *env) add(scenario, figure string, value float64, unit string, g *goal, limit string, limitValue float64, notes string) {
	row := Row{Scenario: scenario, Figure: figure, Value: value, Unit: unit,
		Limit: limit, LimitValue: limitValue, Result: "info", Notes: notes}
	if g != nil {
		row.Goal = g.op + " " + format(g.v, unit)
		if g.limitBelow > 0 {
			row.Goal += ", with " + g.limitText
		}
		row.Result = "miss"
		if g.metBoth(value, limitValue) {
			row.Result = "pass"
		}
	}
	e.report.Rows = append(e.report.Rows, row)
	e.progress("%s %s: %s (%s; %s)", scenario, figure, format(value, unit), row.Result, limit)
}

// format prints v in unit.
func format(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	switch unit {
	case "ratio", "req/msg":
		return fmt.Sprintf("%.3f", v)
	case "share":
		return fmt.Sprintf("%.1f%%", 100*v)
	case "req/min":
		return fmt.Sprintf("%.1f", v)
	case "msg/s":
		return fmt.Sprintf("%s msg/s", thousands(v))
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "µs":
		return fmt.Sprintf("%.0f µs", v)
	case "calls/round":
		return fmt.Sprintf("%.1f", v)
	default:
		return thousands(v)
	}
}

// thousands prints v rounded, with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Markdown writes the report as a markdown table and its notes.
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "### sqsbench, %s (%d CPUs, %s, scale %g, %.0f s)\n\n", r.Mode, r.CPUs, r.GoVersion, r.Scale, r.Seconds)
	fmt.Fprintln(w, "| scenario | figure | measured | goal | limit / baseline (same run) | result |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, row := range r.Rows {
		goalText := row.Goal
		if goalText == "" {
			goalText = "—"
		}
		measured := format(row.Value, row.Unit)
		if row.Notes != "" {
			measured += " (" + row.Notes + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", row.Scenario, row.Figure, measured, goalText, row.Limit, row.Result)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
