package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// TestQueueFlagsAreOneSetting: --queue-url and --queue are two ways of
// giving the queue; the command line beats the environment whichever
// way each gives it, and both ways on one level is a usage error.
func TestQueueFlagsAreOneSetting(t *testing.T) {
	t.Parallel()
	const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantURL string
		wantQ   string
		wantErr string
	}{
		{name: "name on the command line beats a URL in the environment",
			env: map[string]string{"SQSWORKER_QUEUE_URL": url}, args: []string{"--queue", "orders-dlq"}, wantQ: "orders-dlq"},
		{name: "URL on the command line beats a name in the environment",
			env: map[string]string{"SQSWORKER_QUEUE": "orders-dlq"}, args: []string{"--queue-url", url}, wantURL: url},
		{name: "URL in the environment", env: map[string]string{"SQSWORKER_QUEUE_URL": url}, wantURL: url},
		{name: "name in the environment", env: map[string]string{"SQSWORKER_QUEUE": "orders"}, wantQ: "orders"},
		{name: "an empty variable gives nothing",
			env: map[string]string{"SQSWORKER_QUEUE_URL": url, "SQSWORKER_QUEUE": ""}, wantURL: url},
		{name: "both flags", args: []string{"--queue", "orders-dlq", "--queue-url", url},
			wantErr: "--queue-url " + url + " and --queue orders-dlq both name the queue to drain: drop --queue to use " + url + ", or --queue-url to use orders-dlq"},
		{name: "both variables", env: map[string]string{"SQSWORKER_QUEUE_URL": url, "SQSWORKER_QUEUE": "orders-dlq"},
			wantErr: "SQSWORKER_QUEUE_URL=" + url + " and SQSWORKER_QUEUE=orders-dlq both name the queue to drain: unset SQSWORKER_QUEUE to use " + url},
		{name: "both variables, one flag", env: map[string]string{"SQSWORKER_QUEUE_URL": url, "SQSWORKER_QUEUE": "orders-dlq"},
			args: []string{"--queue", "orders-retry"}, wantQ: "orders-retry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFlagSet(drainCmd.name)
			f.env = func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			drainCmd.flags(f)
			err := f.parse(drainCmd, tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), "usage: "+tt.wantErr) {
					t.Fatalf("error %v, want a usage error %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u, q := f.fs.Lookup("queue-url").Value.String(), f.fs.Lookup("queue").Value.String(); u != tt.wantURL || q != tt.wantQ {
				t.Errorf("--queue-url %q --queue %q, want %q and %q", u, q, tt.wantURL, tt.wantQ)
			}
		})
	}
}

// TestDrainDrainsTheQueueTheCommandLineNames: with the environment naming
// queue A (as a deployment's manifest does) and the command line naming
// B, drain drains B and leaves every message of A where it is.
func TestDrainDrainsTheQueueTheCommandLineNames(t *testing.T) {
	t.Parallel()
	const inA, inB = 30, 12
	for _, tt := range []struct {
		name string
		env  func(a sqstest.Queue) string
		arg  func(b sqstest.Queue) []string
	}{
		{"URL in the environment, name on the command line",
			func(a sqstest.Queue) string { return "SQSWORKER_QUEUE_URL=" + a.URL },
			func(b sqstest.Queue) []string { return []string{"--queue", b.Name} }},
		{"name in the environment, URL on the command line",
			func(a sqstest.Queue) string { return "SQSWORKER_QUEUE=" + a.Name },
			func(b sqstest.Queue) []string { return []string{"--queue-url", b.URL} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, _ := sendAll(t, "identity-a", inA, sqstest.QueueOptions{})
			b, sentB := sendAll(t, "identity-b", inB, sqstest.QueueOptions{})
			out := filepath.Join(t.TempDir(), "b.jsonl")
			env := append(append(os.Environ(), server.Env()...), tt.env(a))
			args := append([]string{"drain", "--out", out, "--wait-time", "1s"}, tt.arg(b)...)
			_, stderr, code := toolEnv(t, env, "", args...)
			if code != 0 {
				t.Fatalf("drain: exit %d: %s", code, stderr)
			}
			if first, _, _ := strings.Cut(stderr, "\n"); !strings.HasPrefix(first, "draining "+b.URL+" ") {
				t.Errorf("first stderr line %q, want it to name %s", first, b.URL)
			}
			got := map[string]int{}
			fileBodies(t, out, got)
			if lost, dup := countLostAndDuplicates(sentB, got); lost != 0 || dup != 0 || len(got) != inB {
				t.Errorf("the file holds %d messages (%d of B lost, %d twice); want B's %d", len(got), lost, dup, inB)
			}
			if d := depth(t, a.URL); d.Visible != inA || d.InFlight != 0 {
				t.Errorf("queue A holds %+v after the drain, want all %d visible", d, inA)
			}
			if d := depth(t, b.URL); d != (sqstest.Depth{}) {
				t.Errorf("queue B holds %+v after the drain, want it empty", d)
			}
		})
	}
}

// TestQueueNamedTwoWaysDeletesNothing: both flags, or both variables,
// is a usage error before anything is read, and no message moves.
func TestQueueNamedTwoWaysDeletesNothing(t *testing.T) {
	t.Parallel()
	const inA, inB = 7, 9
	a, _ := sendAll(t, "twice-a", inA, sqstest.QueueOptions{})
	b, _ := sendAll(t, "twice-b", inB, sqstest.QueueOptions{})
	base := append(os.Environ(), server.Env()...)
	for _, tt := range []struct {
		name    string
		env     []string
		args    []string
		wantErr string
	}{
		{"both flags", nil, []string{"--queue", a.Name, "--queue-url", b.URL},
			"both name the queue to drain: drop --queue to use " + b.URL + ", or --queue-url to use " + a.Name},
		{"both variables", []string{"SQSWORKER_QUEUE=" + a.Name, "SQSWORKER_QUEUE_URL=" + b.URL}, nil,
			"both name the queue to drain: unset SQSWORKER_QUEUE to use " + b.URL + ", or SQSWORKER_QUEUE_URL to use " + a.Name},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, cmd := range [][]string{{"drain", "--out", filepath.Join(t.TempDir(), "x.jsonl")}, {"run", "--http-url", "http://127.0.0.1:1/"}} {
				_, stderr, code := toolEnv(t, append(slices.Clone(base), tt.env...), "", append(cmd, tt.args...)...)
				got := strings.TrimRight(stderr, "\n")
				want := strings.Replace(tt.wantErr, "to drain", map[string]string{"drain": "to drain", "run": "to consume"}[cmd[0]], 1)
				if code != 2 || strings.Contains(got, "\n") || !strings.HasPrefix(got, "worker: ") || !strings.Contains(got, want) {
					t.Errorf("%s: exit %d, stderr %q; want status 2 and one line containing %q", cmd[0], code, got, want)
				}
			}
		})
	}
	if d := depth(t, a.URL); d.Visible != inA || d.InFlight != 0 {
		t.Errorf("queue A holds %+v, want all %d visible", d, inA)
	}
	if d := depth(t, b.URL); d.Visible != inB || d.InFlight != 0 {
		t.Errorf("queue B holds %+v, want all %d visible", d, inB)
	}
}

// TestDestructiveToolsNameTheirQueueFirst: every tool that deletes or
// sends says, as its first line on stderr, the queue URL it resolved
// (redrive also where the messages go).
func TestDestructiveToolsNameTheirQueueFirst(t *testing.T) {
	t.Parallel()
	src, _ := sendAll(t, "announce", 3, sqstest.QueueOptions{})
	dst, err := server.CreateQueue(t.Context(), "announce-to", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	handler := newRecorder(t, nil)
	in := writeFile(t, "in.jsonl", `{"body":"one"}`+"\n")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"redrive", "--from", src.Name, "--to", dst.Name, "--wait-time", "1s"},
			"redriving " + src.URL + " to " + dst.URL + " (each message is deleted from the dead-letter queue once its copy is sent; --dry-run moves nothing)"},
		{[]string{"drain", "--queue", dst.Name, "--out", filepath.Join(t.TempDir(), "dst.jsonl"), "--wait-time", "1s"},
			"draining " + dst.URL + " (messages are deleted after their line is written; --keep keeps them)"},
		{[]string{"load", "--queue", dst.Name, "--in", in}, "loading " + in + " into " + dst.URL},
		{[]string{"replay", "--queue", dst.Name, "--http-url", handler.srv.URL, "--wait-time", "1s"},
			"replaying " + dst.URL + " through the handler (each message is deleted once the handler succeeded)"},
	} {
		_, stderr, code := tool(t, "", tt.args...)
		if first, _, _ := strings.Cut(stderr, "\n"); code != 0 || first != tt.want {
			t.Errorf("worker %s: exit %d, first stderr line %q; want status 0 and %q", strings.Join(tt.args, " "), code, first, tt.want)
		}
	}
	if _, total := handler.snapshot(); total != 1 {
		t.Errorf("replay handled %d messages, want the 1 loaded", total)
	}
}

// afterStartLine is a tool's stderr after the line that names the queue
// it works on, which tools that delete or send print before they start.
func afterStartLine(stderr string) string {
	for _, start := range []string{"draining ", "loading ", "redriving ", "replaying "} {
		if strings.HasPrefix(stderr, start) {
			_, rest, _ := strings.Cut(stderr, "\n")
			return rest
		}
	}
	return stderr
}

// notSQS is an HTTP server on loopback that answers every request with
// status 200 and body, as a web application on the wrong port does; it
// records the SQS actions it was asked for.
type notSQS struct {
	srv     *httptest.Server
	mu      sync.Mutex
	actions []string
}

func newNotSQS(t *testing.T, body string) *notSQS {
	n := &notSQS{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.actions = append(n.actions, r.Header.Get("X-Amz-Target"))
		n.mu.Unlock()
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *notSQS) asked(action string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.actions, "AmazonSQS."+action)
}

// TestEndpointThatIsNotSQSIsOneClearError: an endpoint answering 200
// with something SQS never sends is an error naming the endpoint in
// every subcommand, never an empty queue; run never starts receiving.
func TestEndpointThatIsNotSQSIsOneClearError(t *testing.T) {
	t.Parallel()
	base := append(os.Environ(), server.Env()...)
	for _, body := range []string{"ok", "<html><body>It works!</body></html>", "{}", ""} {
		t.Run("body "+body, func(t *testing.T) {
			t.Parallel()
			fake := newNotSQS(t, body)
			ep := fake.srv.URL
			handler := "http://127.0.0.1:1/"
			for _, args := range [][]string{
				{"run", "--queue", "orders", "--http-url", handler, "--idle-timeout", "5s", "--metrics-addr", ""},
				{"run", "--queue-url", ep + "/000000000000/orders", "--http-url", handler, "--idle-timeout", "5s", "--metrics-addr", ""},
				{"stats", "--queue", "orders"},
				{"stats", "--queue-url", ep + "/000000000000/orders"},
				{"drain", "--queue", "orders", "--out", filepath.Join(t.TempDir(), "x.jsonl")},
				{"drain", "--queue-url", ep + "/000000000000/orders", "--keep"},
				{"load", "--queue", "orders"},
				{"redrive", "--from", "orders-dlq"},
				{"replay", "--queue", "orders-dlq", "--http-url", handler},
				{"setup", "--queue", "orders"},
			} {
				_, stderr, code := toolEnv(t, base, `{"body":"x"}`+"\n", append(args, "--endpoint-url", ep)...)
				got := strings.TrimRight(stderr, "\n")
				want := ep + " did not answer like SQS ("
				if code != 1 || strings.Contains(got, "\n") || !strings.HasPrefix(got, "worker: ") || !strings.Contains(got, want) ||
					!strings.HasSuffix(got, "is --endpoint-url right?") {
					t.Errorf("worker %s: exit %d, stderr %q; want status 1 and one line containing %q, asking about --endpoint-url",
						strings.Join(args, " "), code, got, want)
				}
			}
			for _, action := range []string{"ReceiveMessage", "DeleteMessageBatch", "SendMessageBatch", "CreateQueue"} {
				if fake.asked(action) {
					t.Errorf("%s was sent to an endpoint that did not answer like SQS", action)
				}
			}
		})
	}
}

// TestEndpointFromTheEnvironmentThatIsNotSQSIsNamed: the endpoint the SDK
// took from AWS_ENDPOINT_URL_SQS is named too, with where it came from.
func TestEndpointFromTheEnvironmentThatIsNotSQSIsNamed(t *testing.T) {
	t.Parallel()
	fake := newNotSQS(t, "{}")
	var env []string
	for _, kv := range append(os.Environ(), server.Env()...) {
		if !strings.HasPrefix(kv, "AWS_ENDPOINT_URL") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ENDPOINT_URL_SQS="+fake.srv.URL)
	_, stderr, code := toolEnv(t, env, "", "stats", "--queue", "orders")
	want := "worker: " + fake.srv.URL + " did not answer like SQS (GetQueueUrl returned no QueueUrl): is the endpoint right (--endpoint-url, else AWS_ENDPOINT_URL_SQS or AWS_ENDPOINT_URL)?\n"
	if code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want status 1 and %q", code, stderr, want)
	}
}

// TestNoRegionNamesTheFlag: without a region anywhere, the one line says
// to set --region or AWS_REGION, and it is bad usage.
func TestNoRegionNamesTheFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := []string{"AWS_CONFIG_FILE=" + filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "credentials"),
		"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	for _, kv := range server.Env() {
		if !strings.HasPrefix(kv, "AWS_REGION=") {
			env = append(env, kv)
		}
	}
	for _, args := range [][]string{
		{"run", "--queue", "orders", "--http-url", "http://127.0.0.1:1/"},
		{"stats", "--queue", "orders"},
		{"drain", "--queue", "orders", "--keep"},
	} {
		_, stderr, code := toolEnv(t, env, "", args...)
		if want := "worker: no AWS region: set --region or AWS_REGION\n"; code != 2 || stderr != want {
			t.Errorf("worker %s: exit %d, stderr %q; want status 2 and %q", strings.Join(args, " "), code, stderr, want)
		}
	}
}
