// Package sqstest is the shared test server package of the tests, the
// benchmarks and the demo: it starts the project's local SQS-compatible
// server (fauxqs, installed under tools/sqs-server) on loopback, creates
// uniquely named queues on it, puts a fault proxy in front of it, and runs
// the worker binary against it (build, start, wait for its start line,
// scrape its metrics, signal it, wait for its exit).
package sqstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/ownbody"
)

// Credentials and region the local server is used with. The server checks
// neither; the SDK wants both.
const (
	AccessKey = "sqsworker-test"
	SecretKey = "sqsworker-test"
	Region    = "us-east-1"
)

// Server is a running local SQS-compatible server.
type Server struct {
	// Endpoint is the server's URL, http://127.0.0.1:PORT.
	Endpoint string

	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	once  sync.Once
}

// Start installs the server if it is missing (npm ci in tools/sqs-server)
// and starts it on a free loopback port. The server exits when Stop is
// called or when this process dies (it watches its standard input).
func Start() (*Server, error) {
	dir, err := ToolsDir()
	if err != nil {
		return nil, err
	}
	if err := Install(dir); err != nil {
		return nil, err
	}
	node := filepath.Join(dir, "node_modules", ".bin", "node")
	cmd := exec.Command(node, "--no-warnings", "serve.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SQS_SERVER_PORT=0")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the local SQS server (%s): %w", node, err)
	}
	s := &Server{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-lines:
		var port int
		if !ok || !strings.HasPrefix(line, "listening ") {
			s.Stop()
			return nil, fmt.Errorf("local SQS server did not start (it said %q); run `make tools` and try again", line)
		}
		if _, err := fmt.Sscanf(line, "listening %d", &port); err != nil {
			s.Stop()
			return nil, fmt.Errorf("local SQS server said %q: %w", line, err)
		}
		s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
	case <-time.After(30 * time.Second):
		s.Stop()
		return nil, errors.New("local SQS server did not start within 30s")
	}
	if err := s.waitReady(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady() error {
	c := s.Client()
	var lastErr error
	err := Poll(context.Background(), 15*time.Second, 50*time.Millisecond, "the local SQS server to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, lastErr = c.ListQueues(ctx, &sqs.ListQueuesInput{})
		return lastErr == nil
	})
	if err != nil {
		return fmt.Errorf("local SQS server at %s does not answer: %w", s.Endpoint, lastErr)
	}
	return nil
}

// Stop stops the server and waits for it to exit. Stopping twice is harmless.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.stdin.Close()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Client returns an SQS client for the server.
func (s *Server) Client() *sqs.Client { return NewClient(s.Endpoint) }

// NewClient returns an SQS client for a local endpoint, the server's or a
// Proxy's.
func NewClient(endpoint string) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		// The worker's own protection against the SDK closing a request
		// body the transport still reads, so the tests' sends and counts
		// never lose a response either.
		HTTPClient: ownbody.Wrap(awshttp.NewBuildableClient()),
	})
}

// Env is the environment a worker process needs to reach the server.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region,
		"AWS_ENDPOINT_URL_SQS=" + s.Endpoint,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Setenv sets the credentials and region of Env in this process's
// environment, for an SDK client or an in-process worker that reads them
// there; the endpoint is left to the caller (the server's, or a proxy's).
func (s *Server) Setenv() error {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if k == "AWS_ENDPOINT_URL_SQS" {
			continue
		}
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	return nil
}

// ToolsDir finds tools/sqs-server from the working directory upwards.
func ToolsDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		candidate := filepath.Join(dir, "tools", "sqs-server")
		if _, err := os.Stat(filepath.Join(candidate, "package.json")); err == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("tools/sqs-server not found above the working directory")
		}
		dir = parent
	}
}

var installMu sync.Mutex

// Install runs `npm ci` in dir unless the server is already installed.
func Install(dir string) error {
	installMu.Lock()
	defer installMu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "node")); err == nil {
		return nil
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--engine-strict=false")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("install the local SQS server (npm ci in %s): %w\n%s", dir, err, out)
	}
	return nil
}
