package deploy_test

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// ruleFile is the shape of deploy/monitoring/alerts.yml.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alertRules(t *testing.T) []rule {
	t.Helper()
	var f ruleFile
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/monitoring/alerts.yml"), &f); err != nil {
		t.Fatalf("deploy/monitoring/alerts.yml: %v", err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// The alerts the rules must have, by what they watch.
var wantAlerts = []string{
	"SQSWorkerDeadLetterQueueNotEmpty",      // DLQ not empty
	"SQSWorkerBacklogGrowingWhileIdle",      // backlog rising, handlers idle
	"SQSWorkerBacklogGrowingWhileSaturated", // backlog rising, handlers saturated
	"SQSWorkerMessagesOld",                  // oldest messages too old
	"SQSWorkerNotReady",                     // workers not ready
	"SQSWorkerLeasesLost",                   // leases being lost
	"SQSWorkerHandlerErrorsHigh",            // handler error ratio high
	"SQSWorkerThrottled",                    // SQS throttling
	"SQSWorkerDownstreamFailing",            // the handler's downstream failing
}

// TestAlertRules: every alert the operations guide expects is there, each
// with a severity, a summary, a description and a runbook_url naming its
// section of docs/operations.md; queue depth, which every replica
// reports alike, is aggregated with max, never sum.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	rules := alertRules(t)
	anchors := markdownAnchors(string(readFile(t, "docs/operations.md")))
	var names []string
	for _, r := range rules {
		names = append(names, r.Alert)
		if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s has no %s annotation", r.Alert, a)
			}
		}
		path, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
		if path != "docs/operations.md" || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q names no section of docs/operations.md (its sections: %v)", r.Alert, r.Annotations["runbook_url"], sortedKeys(anchors))
		}
		if strings.Contains(r.Expr, "sqsworker_queue_messages") && regexp.MustCompile(`sum\b[^(]*\([^()]*sqsworker_queue_messages`).MatchString(r.Expr) {
			t.Errorf("%s sums sqsworker_queue_messages over replicas; every replica reports the same queue: use max", r.Alert)
		}
	}
	for _, want := range wantAlerts {
		if !slices.Contains(names, want) {
			t.Errorf("the alert rules lack %s", want)
		}
	}
}

// ruleTests is the shape of alerts_test.yml that the check below reads.
type ruleTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			Alertname string            `json:"alertname"`
			ExpAlerts []json.RawMessage `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestAlertRulesWithPromtool runs `promtool check rules` and `promtool test
// rules`; the unit tests must fire every alert on a series that should fire
// it and expect no alert of each on a healthy one.
func TestAlertRulesWithPromtool(t *testing.T) {
	t.Parallel()
	var tests ruleTests
	if err := yaml.Unmarshal(readFile(t, "deploy/monitoring/alerts_test.yml"), &tests); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, r := range alertRules(t) {
		if !fires[r.Alert] || !quiet[r.Alert] {
			t.Errorf("alerts_test.yml: %s fires in a test: %v; expected quiet in one: %v; want both", r.Alert, fires[r.Alert], quiet[r.Alert])
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH: run `make test` (it unpacks promtool from Debian's prometheus package into bin/tools), or put one on PATH")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = root + "/deploy/monitoring"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboard is what the checks read of deploy/monitoring/dashboard.json.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, "deploy/monitoring/dashboard.json"), &d); err != nil {
		t.Fatalf("deploy/monitoring/dashboard.json: %v", err)
	}
	return d
}

func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// TestDashboard: a datasource variable every query panel uses, rates over
// $__rate_interval, unique panel ids, and a panel for each thing an
// operator looks at: handlers, queue and DLQ depth, in flight and
// buffered, leases, SQS requests and their cost per message.
func TestDashboard(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS || d.UID == "" || d.Title == "" {
		t.Errorf("dashboard %q (uid %q): want a title, a uid and a datasource variable of type prometheus", d.Title, d.UID)
	}
	ids := map[int]bool{}
	var exprs []string
	rangeSel := regexp.MustCompile(`\[([^\]]+)\]`)
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			for _, m := range rangeSel.FindAllStringSubmatch(tg.Expr, -1) {
				if m[1] != "$__rate_interval" {
					t.Errorf("panel %q: range [%s], want [$__rate_interval]: %s", p.Title, m[1], tg.Expr)
				}
			}
		}
	}
	all := strings.Join(exprs, "\n")
	for what, want := range map[string]string{
		"handler rate and errors": "sqsworker_messages_processed_total", "handler duration": "sqsworker_handler_duration_seconds_bucket",
		"queue and DLQ depth": "max by (queue", "in flight": "sqsworker_messages_in_flight", "buffered": "sqsworker_messages_buffered",
		"lease extensions": "sqsworker_visibility_extensions_total", "lease losses": "sqsworker_leases_lost_total",
		"SQS requests by action and outcome": "sum by (action, outcome) (rate(sqsworker_sqs_requests_total",
		"requests per message":               "/ sum(rate(sqsworker_messages_received_total",
		"message age":                        "sqsworker_message_age_seconds_bucket",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the dashboard shows no %s (no query with %q)", what, want)
		}
	}
	if strings.Contains(all, "sum by (queue") || strings.Contains(all, "sum(sqsworker_queue_messages") {
		t.Errorf("the dashboard sums sqsworker_queue_messages over replicas; every replica reports the same queue: use max")
	}
}

// queried is a metric name and the label names queries use with it.
type queried map[string]map[string]bool

var (
	metricName = regexp.MustCompile(`\bsqsworker_[a-z0-9_]+`)
	selector   = regexp.MustCompile(`\b(sqsworker_[a-z0-9_]+)\s*\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	grouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
)

// targetLabels are added by Prometheus when it scrapes, not by the worker.
var targetLabels = map[string]bool{"job": true, "instance": true}

// queriedMetrics reads the metric names and label names of PromQL
// expressions: the labels of selectors, and those of by/on clauses (which
// must belong to one of the expression's metrics, or be a target label).
func queriedMetrics(exprs []string) (q queried, grouped map[string][]string) {
	q, grouped = queried{}, map[string][]string{}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			if q[name] == nil {
				q[name] = map[string]bool{}
			}
		}
		for _, m := range selector.FindAllStringSubmatch(e, -1) {
			for _, l := range matcher.FindAllStringSubmatch(m[2], -1) {
				q[m[1]][l[1]] = true
			}
		}
		for _, m := range grouping.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(m[1], ",") {
				if l = strings.TrimSpace(l); l != "" {
					grouped[e] = append(grouped[e], l)
				}
			}
		}
	}
	return q, grouped
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// markdownAnchors are the anchors GitHub makes of a document's headings:
// lower case, punctuation dropped, spaces as hyphens.
func markdownAnchors(doc string) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(l, "#")))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		out[b.String()] = true
	}
	return out
}
