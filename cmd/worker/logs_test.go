package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestNoCredentialsOneLine starts the worker with no credentials anywhere:
// no keys in the environment, no profile, and an instance metadata service
// (a local stand-in) that refuses IMDSv2 tokens and has no role, as on a
// machine that is not an EC2 instance. Every line on stderr must be a zap
// JSON line, the SDK's own warning too, but for the one start-up error
// line, which says what to set instead of the SDK's nested error chain.
func TestNoCredentialsOneLine(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		asked.Add(1)
		http.NotFound(w, nil)
	}))
	defer imds.Close()
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+home, "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE="+filepath.Join(home, "no-config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "no-credentials"),
		"AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds.URL)
	cmd := exec.Command(workerBin, "run", "--queue-url", server.Endpoint+"/000000000000/orders",
		"--endpoint-url", server.Endpoint, "--http-url", "http://127.0.0.1:1/", "--metrics-addr", "127.0.0.1:0")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if asked.Load() == 0 {
		t.Fatalf("the worker never asked the instance metadata service: the test does not exercise the SDK's chain\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"worker: no AWS credentials found", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "role"} {
		if !strings.Contains(last, want) {
			t.Errorf("last stderr line %q: want %q in it", last, want)
		}
	}
	sawSDKWarning := false
	for _, l := range lines[:len(lines)-1] {
		var entry struct{ Level, Logger, Msg string }
		if err := json.Unmarshal([]byte(l), &entry); err != nil || entry.Level == "" || entry.Msg == "" {
			t.Errorf("stderr line is not a zap JSON line: %q", l)
			continue
		}
		if entry.Logger == "aws" && strings.Contains(entry.Msg, "falling back to IMDSv1") {
			sawSDKWarning = true
		}
	}
	if !sawSDKWarning {
		t.Errorf("no zap line carries the SDK's IMDSv1 warning (logger \"aws\"); stderr:\n%s", stderr.String())
	}
	if strings.Contains(last, "ec2imds") {
		t.Errorf("the start-up error line carries the SDK's nested IMDS error: %q", last)
	}
}
