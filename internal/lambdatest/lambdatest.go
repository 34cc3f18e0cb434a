// Package lambdatest runs a Lambda function on loopback for the tests:
// it builds the Lambda runtime interface emulator (a tool of this module,
// into bin/tools) and the test function lambdafn (written with
// aws-lambda-go), and starts the emulator with the function as its
// bootstrap, so that the lambda handler is tested against the emulator a
// function image runs, not a fake.
package lambdatest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-lambda-go/events"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// Packages built by Build.
const (
	EmulatorPackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
	FunctionPackage = "github.com/sqsworker/sqsworker/internal/lambdatest/lambdafn"
	// FunctionName is the name the emulator answers to.
	FunctionName = "function"
)

var (
	buildOnce          sync.Once
	emulatorBin, fnBin string
	buildErr           error
)

// Build builds the emulator into bin/tools of the module (as the Makefile's
// tools target does) and the function next to it, once per process.
func Build() (emulator, function string, err error) {
	buildOnce.Do(func() {
		dir, err := sqstest.ToolsDir() // tools/sqs-server: the module root is two up
		if err != nil {
			buildErr = err
			return
		}
		out := filepath.Join(filepath.Dir(filepath.Dir(dir)), "bin", "tools")
		emulatorBin, fnBin = filepath.Join(out, "aws-lambda-rie"), filepath.Join(out, "lambdafn")
		ctx := context.Background()
		if buildErr = sqstest.Build(ctx, EmulatorPackage, emulatorBin); buildErr != nil {
			return
		}
		buildErr = sqstest.Build(ctx, FunctionPackage, fnBin)
	})
	return emulatorBin, fnBin, buildErr
}

// Options shape Start.
type Options struct {
	// Timeout is the function's timeout in seconds
	// (AWS_LAMBDA_FUNCTION_TIMEOUT). Defaults to the emulator's, 300.
	Timeout int
}

// Emulator is the runtime interface emulator running lambdafn.
type Emulator struct {
	*sqstest.Process
	// EndpointURL is where it takes Invoke calls, http://127.0.0.1:PORT.
	EndpointURL string
	// RecordDir is where the function writes each event it was given.
	RecordDir string
}

// Start builds what is missing and starts the emulator on free loopback
// ports (its own, and its runtime API's), with recordDir for the events.
func Start(recordDir string, o Options) (*Emulator, error) {
	rie, fn, err := Build()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	env := []string{"LAMBDAFN_RECORD_DIR=" + recordDir, "AWS_LAMBDA_FUNCTION_NAME=" + FunctionName}
	if o.Timeout > 0 {
		env = append(env, "AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(o.Timeout))
	}
	p, err := sqstest.StartProcess(sqstest.ProcessOptions{
		Name: "lambda emulator",
		Path: rie,
		Args: []string{"--runtime-interface-emulator-address", addr, "--runtime-api-address", "127.0.0.1:" + strconv.Itoa(apiPort), fn},
		Env:  env,
		// It logs "exec '<bootstrap>'" once it runs the function; its
		// listener is up by then.
		Ready: reExec,
	})
	if err != nil {
		return nil, err
	}
	return &Emulator{Process: p, EndpointURL: "http://" + addr, RecordDir: recordDir}, nil
}

func reExec(line string) bool {
	return strings.Contains(line, "(rapid) exec '") || strings.Contains(line, "executing bootstrap")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Events reads every event the function was given, in no order.
func Events(dir string) ([]events.SQSEvent, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	evs := make([]events.SQSEvent, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var ev events.SQSEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// Seen counts, per body, how many times the function was given a message
// with that body.
func Seen(dir string) (map[string]int, error) {
	evs, err := Events(dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]int{}
	for _, ev := range evs {
		for _, r := range ev.Records {
			seen[r.Body]++
		}
	}
	return seen, nil
}
