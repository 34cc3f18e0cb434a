package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// tool runs the worker binary with args against the test server, stdin
// as its input, and returns what it wrote and its exit status.
func tool(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return toolEnv(t, append(os.Environ(), server.Env()...), stdin, args...)
}

// toolEnv is tool with the environment env, the whole of it.
func toolEnv(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(workerBin, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("run worker %v: %v", args, err)
		}
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// attributeLines are n lines with a string, a number and a binary
// attribute; on a FIFO queue, with group and deduplication ids.
func attributeLines(n int, fifo bool) string {
	var b strings.Builder
	for i := range n {
		ids := ""
		if fifo {
			ids = fmt.Sprintf(`,"attributes":{"MessageGroupId":"g%d","MessageDeduplicationId":"d%d"}`, i%3, i)
		}
		fmt.Fprintf(&b, `{"body":"message %d"%s,"message_attributes":{"s":{"data_type":"String","string_value":"s%d"},`+
			`"n":{"data_type":"Number","string_value":"%d"},"b":{"data_type":"Binary","binary_value":"AAH/"}}}`+"\n", i, ids, i, i)
	}
	return b.String()
}

func TestLoadSendsEveryLine(t *testing.T) {
	t.Parallel()
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			t.Parallel()
			const n = 45
			q, err := server.CreateQueue(t.Context(), "load-cli", sqstest.QueueOptions{FIFO: fifo})
			if err != nil {
				t.Fatal(err)
			}
			path := writeFile(t, "in.jsonl", attributeLines(n, fifo))
			stdout, stderr, code := tool(t, "", "load", "--queue", q.Name, "--in", path, "--rate", "2000/s")
			if code != 0 || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
			}
			if want := fmt.Sprintf("loading %s into %s\nload: %d lines from %s: %d sent to %s\n", path, q.URL, n, path, n, q.Name); stderr != want {
				t.Errorf("stderr %q, want %q", stderr, want)
			}
			got := map[string]string{}
			c := server.Client()
			for len(got) < n {
				out, err := c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 10,
					WaitTimeSeconds: 2, MessageAttributeNames: []string{"All"},
					MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
				if err != nil || len(out.Messages) == 0 {
					t.Fatalf("received %d of %d: %v", len(got), n, err)
				}
				for _, m := range out.Messages {
					a := m.MessageAttributes
					got[aws.ToString(m.Body)] = fmt.Sprintf("%s %s %x %s %s", aws.ToString(a["s"].StringValue), aws.ToString(a["n"].StringValue),
						a["b"].BinaryValue, m.Attributes["MessageGroupId"], m.Attributes["MessageDeduplicationId"])
					_, _ = c.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(q.URL), ReceiptHandle: m.ReceiptHandle})
				}
			}
			for i := range n {
				want := fmt.Sprintf("s%d %d 0001ff  ", i, i)
				if fifo {
					want = fmt.Sprintf("s%d %d 0001ff g%d d%d", i, i, i%3, i)
				}
				if g := got[fmt.Sprintf("message %d", i)]; g != want {
					t.Errorf("message %d: %q, want %q", i, g, want)
				}
			}
		})
	}
}

// TestLoadBadInputOneClearLine: each mistake is one line saying what is
// wrong, a non-zero status, and nothing sent that should not be.
func TestLoadBadInputOneClearLine(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "load-bad", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good := writeFile(t, "good.jsonl", `{"body":"fine"}`+"\n")
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantErr  string
	}{
		{"missing file", []string{"--queue", q.Name, "--in", "/no/such/file.jsonl"}, "", 1,
			"cannot read --in /no/such/file.jsonl: no such file or directory"},
		{"unreadable file", []string{"--queue", q.Name, "--in", t.TempDir()}, "", 1, "is a directory"},
		{"unknown queue", []string{"--queue", "no-such-queue", "--in", good}, "", 1, "queue no-such-queue does not exist"},
		{"rate 0", []string{"--queue", q.Name, "--in", good, "--rate", "0"}, "", 2, `--rate "0": want messages per second above 0`},
		{"rate words", []string{"--queue", q.Name, "--in", good, "--rate", "fast"}, "", 2, `--rate "fast"`},
		{"no queue", []string{"--in", good}, "", 2, "--queue-url or --queue is required"},
		{"extra argument", []string{"--queue", q.Name, good}, "", 2, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := tool(t, tt.stdin, append([]string{"load"}, tt.args...)...)
			got := strings.TrimRight(stderr, "\n")
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tt.wantCode, got)
			}
			if strings.Contains(got, "\n") || !strings.HasPrefix(got, "worker: ") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("stderr %q, want one 'worker: ' line containing %q", got, tt.wantErr)
			}
		})
	}
	if d := depth(t, q.URL); d.Visible != 0 {
		t.Errorf("%d messages sent by runs that should have sent none", d.Visible)
	}
}

// TestLoadMalformedLineNamesIt: a bad line is named by its number and
// reason, the good lines around it are sent, and the summary says so.
func TestLoadMalformedLineNamesIt(t *testing.T) {
	t.Parallel()
	q, err := server.CreateQueue(t.Context(), "load-malformed", sqstest.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	input := "{\"body\":\"one\"}\n{\"body\": oops}\n{\"body\":\"two\"}\n"
	_, stderr, code := tool(t, input, "load", "--queue-url", q.URL)
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if code != 1 || len(lines) != 3 {
		t.Fatalf("exit %d, stderr:\n%s\nwant status 1, the queue, the bad line and a summary", code, stderr)
	}
	if want := "loading stdin into " + q.URL; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	if !strings.HasPrefix(lines[1], "worker: stdin:2: skipped: not valid JSON: invalid character 'o'") {
		t.Errorf("second line %q, want it to name stdin:2 and why", lines[1])
	}
	if want := "worker: load: 3 lines from stdin: 2 sent to " + q.Name + ", 0 refused, 1 skipped"; !strings.HasPrefix(lines[2], want) {
		t.Errorf("summary %q, want %q…", lines[2], want)
	}
	if d := depth(t, q.URL); d.Visible != 2 {
		t.Errorf("%d messages in the queue, want the 2 good lines", d.Visible)
	}
}
