package sqstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"time"
)

// WorkerPackage is the worker binary's import path, for BuildWorker.
const WorkerPackage = "github.com/sqsworker/sqsworker/cmd/worker"

// WorkerTags are the build tags the worker binary is built with, here, by
// the Makefile and by the Dockerfile. grpcnotrace: the OTLP exporter links
// gRPC (its protobuf package carries the gRPC service too), and gRPC's
// request tracing pulls in html/template, whose use of reflection makes
// the linker keep every exported method of every type: without the tag
// the binary is a third larger, and so is what it maps resident.
const WorkerTags = "grpcnotrace"

// BuildWorker builds the worker binary to path with go build and
// WorkerTags, passing flags ("-race") before -o. It runs from the working
// directory, which must be inside this module.
func BuildWorker(ctx context.Context, path string, flags ...string) error {
	return Build(ctx, WorkerPackage, path, append([]string{"-tags=" + WorkerTags}, flags...)...)
}

// Build builds the command pkg (an import path in this module) to path
// with go build, passing flags before -o, from the working directory.
func Build(ctx context.Context, pkg, path string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", path, pkg)
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}

// Worker is the worker binary running against a Server, started by
// Server.StartWorker.
type Worker struct {
	*Process
	// MetricsAddr is where it serves /metrics, /healthz and /readyz
	// (host:port), as its "worker started" line says.
	MetricsAddr string
	// PprofAddr is where it serves /debug/pprof/, "" when it does not.
	PprofAddr string
}

// WorkerOptions shape Server.StartWorker.
type WorkerOptions struct {
	// Args follow `run --metrics-addr 127.0.0.1:0 --log-level info
	// --log-format json`; a flag given again wins.
	Args []string
	// Env follows this process's environment and the server's (Env); for
	// a key given twice the later value wins, so AWS_ENDPOINT_URL_SQS here
	// points the worker at a proxy.
	Env []string
	// Line, when set, sees every line of the worker's log.
	Line func(line string)
}

// startedLine is the log line the worker writes once it runs.
type startedLine struct {
	Msg         string `json:"msg"`
	MetricsAddr string `json:"metrics_addr"`
	PprofAddr   string `json:"pprof_addr"`
}

// StartWorker runs `worker run` from bin against the server and waits for
// its "worker started" line, which names the metrics address.
func (s *Server) StartWorker(bin string, o WorkerOptions) (*Worker, error) {
	var started startedLine
	p, err := StartProcess(ProcessOptions{
		Name: "worker",
		Path: bin,
		Args: append([]string{"run", "--metrics-addr", "127.0.0.1:0", "--log-level", "info", "--log-format", "json"}, o.Args...),
		Env:  append(s.Env(), o.Env...),
		Ready: func(line string) bool {
			var l startedLine
			if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "worker started" {
				return false
			}
			started = l
			return true
		},
		Line: o.Line,
	})
	if err != nil {
		return nil, err
	}
	return &Worker{Process: p, MetricsAddr: started.MetricsAddr, PprofAddr: started.PprofAddr}, nil
}

// Scrape reads the worker's /metrics.
func (w *Worker) Scrape(ctx context.Context) (Metrics, error) {
	return Scrape(ctx, w.MetricsAddr)
}

// Ready reports whether the worker's /readyz answers 200.
func (w *Worker) Ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.MetricsAddr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
