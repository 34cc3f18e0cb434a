package deploy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// TestQueriedMetricsAreExported runs the worker binary against the local
// server with a dead-letter queue, lets it handle messages (some fail and
// are retried, one the handler dead-letters), scrapes /metrics, and checks
// that every metric the dashboard and the alert rules query is exported
// with every label they select or group by; and that each SQS action the
// worker called is one the worker's IAM policy allows.
func TestQueriedMetricsAreExported(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	q, err := server.CreateQueue(ctx, "exported", sqstest.QueueOptions{MaxReceiveCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([]string, 40)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("ok-%02d", i)
		if i%8 == 0 {
			bodies[i] = fmt.Sprintf("fail-%02d", i)
		}
	}
	bodies[0] = "dead-00" // the handler says it can never succeed
	if err := server.SendBodies(ctx, q.URL, bodies, nil); err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case strings.HasPrefix(string(b), "fail-"):
			http.Error(w, "refused", http.StatusInternalServerError)
		case strings.HasPrefix(string(b), "dead-"):
			w.Header().Set(handler.DeadLetterHeader, "unparseable")
			http.Error(w, "cannot parse it", http.StatusUnprocessableEntity)
		}
	}))
	defer app.Close()
	w, err := server.StartWorker(workerBin, sqstest.WorkerOptions{Args: []string{
		"--queue-url", q.URL, "--http-url", app.URL, "--wait-time", "1s", "--retry-backoff-min", "0s", "--retry-backoff-max", "0s",
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Kill()
	var m sqstest.Metrics
	testkit.Eventually(t, 2*time.Minute, "the good messages handled and the bad ones in the dead-letter queue", func() bool {
		if m, err = w.Scrape(ctx); err != nil {
			return false
		}
		d, err := server.QueueDepth(ctx, q.DLQURL)
		return err == nil && m.Value("sqsworker_messages_deleted_total") >= 35 && d.Visible == 5
	})
	if code, err := w.Stop(syscall.SIGTERM, 30*time.Second); err != nil || code != 0 {
		t.Errorf("exit %d (%v), want 0", code, err)
	}

	var exprs []string
	for _, p := range loadDashboard(t).allPanels() {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, r := range alertRules(t) {
		exprs = append(exprs, r.Expr)
	}
	used, grouped := queriedMetrics(exprs)
	labelsOf := func(name string) (map[string]bool, bool) {
		family, suffixed := m[name], false
		if family == nil {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, s); ok && m[base].GetType() == dto.MetricType_HISTOGRAM {
					family, suffixed = m[base], s == "_bucket"
				}
			}
		}
		if family == nil {
			return nil, false
		}
		labels := map[string]bool{}
		if suffixed {
			labels["le"] = true
		}
		for _, s := range family.GetMetric() {
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		return labels, true
	}
	for name, want := range used {
		have, ok := labelsOf(name)
		if !ok {
			t.Errorf("the dashboard or the alert rules query %s, which the worker does not export", name)
			continue
		}
		for l := range want {
			if !have[l] && !targetLabels[l] {
				t.Errorf("a query selects %s by label %q, which it does not have (it has %v)", name, l, sortedKeys(have))
			}
		}
	}
	for expr, labels := range grouped {
		names := metricName.FindAllString(expr, -1)
		if slices.ContainsFunc(names, func(n string) bool { _, ok := labelsOf(n); return !ok }) {
			continue // reported above
		}
		for _, l := range labels {
			found := targetLabels[l]
			for _, name := range names {
				if have, _ := labelsOf(name); have[l] {
					found = true
				}
			}
			if !found {
				t.Errorf("%q groups by %q, which none of its metrics %v has", expr, l, names)
			}
		}
	}

	allowed := policyActions(t, "deploy/kubernetes/iam/worker-policy.json")
	var called []string
	for _, s := range m["sqsworker_sqs_requests_total"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "action" && !slices.Contains(called, l.GetValue()) {
				called = append(called, l.GetValue())
			}
		}
	}
	if len(called) == 0 {
		t.Fatal("no sqsworker_sqs_requests_total series: the worker called nothing?")
	}
	for _, action := range called {
		// A batch call needs the permission of its single form.
		if perm := "sqs:" + strings.TrimSuffix(action, "Batch"); !allowed[perm] {
			t.Errorf("the worker called %s, which needs %s: deploy/kubernetes/iam/worker-policy.json does not allow it", action, perm)
		}
	}
}
