package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// TestExecSeesOnlyAllowedEnvironment: the command run per message sees
// none of the worker's AWS_* variables (its credentials) unless allowed:
// --exec-env AWS_REGION lets exactly that one through, SQSWORKER_EXEC_ENV
// takes a comma-separated list with prefixes, --exec-inherit-env passes
// everything.
func TestExecSeesOnlyAllowedEnvironment(t *testing.T) {
	t.Parallel()
	var inherited []string // the worker's AWS_* names
	for _, kv := range append(os.Environ(), server.Env()...) {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "AWS_") && !slices.Contains(inherited, name) {
			inherited = append(inherited, name)
		}
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want []string // the AWS_* and SQSWORKER_* names the command sees
	}{
		{name: "default"},
		{name: "one name", args: []string{"--exec-env", "AWS_REGION"}, want: []string{"AWS_REGION"}},
		{name: "variable with a prefix", env: []string{"SQSWORKER_EXEC_ENV=AWS_REGION,AWS_ENDPOINT_*"},
			want: []string{"AWS_ENDPOINT_URL_SQS", "AWS_REGION"}},
		{name: "inherit", args: []string{"--exec-inherit-env"}, env: []string{"SQSWORKER_EXEC_ENV=AWS_REGION"},
			want: append([]string{"SQSWORKER_EXEC_ENV"}, inherited...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q, _ := sendAll(t, "exec-env-"+strings.ReplaceAll(tt.name, " ", "-"), 1, sqstest.QueueOptions{})
			out := filepath.Join(t.TempDir(), "env")
			args := append([]string{"--queue-url", q.URL, "--wait-time", "1s", "--max-messages", "1", "--handler", "exec",
				"--exec", "/bin/sh", "--exec", "-c", "--exec", `env > '` + out + `'`}, tt.args...)
			w, err := server.StartWorker(workerBin, sqstest.WorkerOptions{Args: args, Env: tt.env})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Kill()
			if code, err := w.Wait(time.Minute); err != nil || code != 0 {
				t.Fatalf("worker: exit %d, %v; want 0 after one message\n%s", code, err, w.LastLines(20))
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("the command did not run: %v\n%s", err, w.LastLines(20))
			}
			var got []string
			for _, l := range strings.Split(string(b), "\n") {
				if name, _, ok := strings.Cut(l, "="); ok && (strings.HasPrefix(name, "AWS_") || strings.HasPrefix(name, "SQSWORKER_")) {
					got = append(got, name)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("the command sees %v; want %v", got, want)
			}
			if !strings.Contains(string(b), "SQS_MESSAGE_ID=") || !strings.Contains(string(b), "PATH=") {
				t.Errorf("the command lacks SQS_MESSAGE_ID or PATH:\n%s", b)
			}
		})
	}
}

// TestHandlerURLPasswordNeverShown: with a user and password in
// --http-url, the handler gets them as basic authentication, and when it
// fails no log line (at debug level, the most there is) and no pprof page
// shows the password; the response body, which may carry message content,
// is only in the debug line.
func TestHandlerURLPasswordNeverShown(t *testing.T) {
	t.Parallel()
	const password, body = "s3cret-pw", "card-4242"
	var mu sync.Mutex
	var auth []string
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		http.Error(w, body, http.StatusInternalServerError)
	}))
	t.Cleanup(h.Close) // after the parallel subtests
	refused := "http://" + closedPort(t)
	for _, tt := range []struct{ name, url string }{{"500", h.URL}, {"refused", refused}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q, _ := sendAll(t, "url-password-"+tt.name, 2, sqstest.QueueOptions{})
			withPassword := strings.Replace(tt.url, "http://", "http://robot:"+password+"@", 1) + "/work"
			w := startWorker(t, "--queue-url", q.URL, "--http-url", withPassword, "--wait-time", "1s", "--log-level", "debug",
				"--pprof-addr", "127.0.0.1:0", "--retry-backoff-min", "1s", "--retry-backoff-max", "1s")
			testkit.Eventually(t, time.Minute, "both messages failed", func() bool {
				return w.scrape().Value("sqsworker_messages_processed_total", "outcome", "failure") >= 2
			})
			pages := map[string]string{}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=2"} {
				pages[path] = fetchPage(t, "http://"+w.PprofAddr+path)
			}
			if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
			for path, page := range pages {
				if strings.Contains(page, password) {
					t.Errorf("GET %s shows the password:\n%s", path, page)
				}
			}
			if !strings.Contains(pages["/debug/pprof/"], "goroutine") {
				t.Errorf("the pprof index lists no profiles:\n%s", pages["/debug/pprof/"])
			}
			logs := w.Logs()
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, password) {
					t.Errorf("a log line shows the password: %s", l)
				}
				if strings.Contains(l, "handler failed") && strings.Contains(l, body) {
					t.Errorf("a handler-failed line shows the response body: %s", l)
				}
			}
			if !strings.Contains(logs, "http://xxxxx@127.0.0.1") {
				t.Errorf("no log line names the handler's URL, redacted:\n%s", w.LastLines(20))
			}
			if tt.name != "500" {
				return
			}
			if !strings.Contains(logs, `"body":"`+body+`"`) {
				t.Errorf("no debug line has the response body:\n%s", w.LastLines(20))
			}
			mu.Lock()
			defer mu.Unlock()
			want := "Basic " + base64.StdEncoding.EncodeToString([]byte("robot:"+password))
			if len(auth) == 0 || auth[0] != want {
				t.Errorf("the handler got Authorization %v; want %q", auth, want)
			}
		})
	}
}

func fetchPage(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestListenersDefaultToLoopback: without --metrics-addr the metrics
// listen on 127.0.0.1:9090, and --pprof alone serves on 127.0.0.1:6060:
// nothing beyond the host. Another program may hold either port on a
// shared machine; the worker's refusal then names the same address.
func TestListenersDefaultToLoopback(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "listen-defaults", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, field, want string
		args              []string
	}{
		{name: "metrics", field: "metrics_addr", want: "127.0.0.1:9090"},
		{name: "pprof", field: "pprof_addr", want: "127.0.0.1:6060", args: []string{"--metrics-addr", "127.0.0.1:0", "--pprof"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := sqstest.StartProcess(sqstest.ProcessOptions{
				Name: "worker", Path: workerBin,
				Args:  append([]string{"run", "--queue-url", q.URL, "--http-url", "http://127.0.0.1:1/", "--wait-time", "1s"}, tt.args...),
				Env:   server.Env(),
				Ready: func(line string) bool { return strings.Contains(line, `"worker started"`) },
			})
			if err != nil {
				if strings.Contains(err.Error(), tt.want+": bind: address already in use") {
					t.Logf("port taken by another program; the worker tried %s: %v", tt.want, err)
					return
				}
				t.Fatal(err)
			}
			defer p.Kill()
			var started map[string]any
			if err := json.Unmarshal([]byte(p.ReadyLine), &started); err != nil {
				t.Fatal(err)
			}
			addr, _ := started[tt.field].(string)
			host, _, err := net.SplitHostPort(addr)
			if ip := net.ParseIP(host); addr != tt.want || err != nil || ip == nil || !ip.IsLoopback() {
				t.Errorf("%s %q; want %s, on loopback", tt.field, addr, tt.want)
			}
			if _, err := p.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestUnwrapSNSOnlyFromAllowedTopics: with --sns-topic-arn, a notification
// from that topic reaches the handler unwrapped; one from another topic
// subscribed to the same queue never reaches it, fails with a warning
// naming its topic, and ends in the dead-letter queue.
func TestUnwrapSNSOnlyFromAllowedTopics(t *testing.T) {
	t.Parallel()
	name := fmt.Sprintf("sns-allowed-%d", time.Now().UnixNano()%1e9)
	snsc := server.SNSClient()
	var topics []string
	for _, n := range []string{"orders", "other"} {
		topic, err := snsc.CreateTopic(t.Context(), &sns.CreateTopicInput{Name: aws.String(name + "-" + n)})
		if err != nil {
			t.Fatal(err)
		}
		topics = append(topics, aws.ToString(topic.TopicArn))
	}
	allowed, other := topics[0], topics[1]
	if stdout, stderr, code := tool(t, "", "setup", "--endpoint-url", server.Endpoint, "--queue", name, "--max-receive", "1",
		"--subscribe", allowed, "--subscribe", other); code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, stdout, stderr)
	}
	var mu sync.Mutex
	var got []string
	h := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b)+" from "+r.Header.Get("X-Aws-Sqsd-Attr-SNS-Topic-Arn"))
		mu.Unlock()
	}))
	defer h.Close()
	w := startWorker(t, "--queue", name, "--http-url", h.URL, "--unwrap-sns", "--sns-topic-arn", allowed, "--wait-time", "1s")
	for _, topic := range topics {
		if _, err := snsc.Publish(t.Context(), &sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String("to " + topic)}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, time.Minute, "one message handled, the other failed", func() bool {
		m := w.scrape()
		return m.Value("sqsworker_messages_deleted_total") == 1 && m.Value("sqsworker_messages_processed_total", "outcome", "failure") == 1
	})
	dlq, err := server.Client().GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the refused message in the dead-letter queue", func() bool {
		return depth(t, aws.ToString(dlq.QueueUrl)).Visible == 1
	})
	if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("worker exit status %d", code)
	}
	mu.Lock()
	if want := []string{"to " + allowed + " from " + allowed}; !slices.Equal(got, want) {
		t.Errorf("handler got %q, want %q", got, want)
	}
	mu.Unlock()
	if logs := w.Logs(); !strings.Contains(logs, "SNS envelope names a topic not allowed") || !strings.Contains(logs, `"topic_arn":"`+other+`"`) {
		t.Errorf("no warning names the refused topic %s:\n%s", other, w.LastLines(20))
	}
}
