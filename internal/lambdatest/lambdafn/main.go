// Command lambdafn is the AWS Lambda function the tests run in the Lambda
// runtime interface emulator: an SQS handler written with aws-lambda-go,
// whose behaviour each message body scripts. A record's body is one of:
//
//	ok              succeed (so does any body not listed here)
//	fail            report this record's messageId in batchItemFailures
//	error           return an error: the whole invocation fails
//	panic           panic: the runtime reports it and exits
//	exit            exit at once without answering: the runtime crashes
//	sleep           sleep for an hour: past any function timeout
//	malformed       answer with a body that is not JSON
//	unknown-id      report a messageId that is not in the batch
//	empty-id        report an empty itemIdentifier
//	block:DIR       create DIR/started, then wait until DIR/release, a
//	                named pipe, is opened for writing: the test holds the
//	                invocation open without sleeping
//
// A command followed by "-once" (error-once, panic-once, malformed-once,
// sleep-once, exit-once) does so the first time it sees the message and
// succeeds afterwards; it needs LAMBDAFN_RECORD_DIR, where it keeps a mark.
//
// With LAMBDAFN_RECORD_DIR set, every event is written there, decoded into
// events.SQSEvent and encoded again, one file per invocation named by its
// request id after the time it began, so that names sort in the order of
// the invocations: tests count what the function saw, in which order, and
// compare what aws-lambda-go read with what they sent.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func main() {
	lambda.Start(handle)
}

// handle returns any, not events.SQSEventResponse, so that "malformed" can
// answer with raw bytes: aws-lambda-go passes an io.Reader through as it is.
func handle(ctx context.Context, ev events.SQSEvent) (any, error) {
	if dir := os.Getenv("LAMBDAFN_RECORD_DIR"); dir != "" {
		if err := record(ctx, dir, ev); err != nil {
			return nil, err
		}
	}
	var resp events.SQSEventResponse
	for _, r := range ev.Records {
		cmd, arg, _ := strings.Cut(r.Body, ":")
		if base, ok := strings.CutSuffix(cmd, "-once"); ok {
			if !first(r.MessageId) {
				continue
			}
			cmd = base
		}
		switch cmd {
		case "fail":
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		case "error":
			return nil, fmt.Errorf("scripted error for message %s", r.MessageId)
		case "panic":
			panic("scripted panic for message " + r.MessageId)
		case "exit":
			os.Exit(3)
		case "sleep":
			time.Sleep(time.Hour)
		case "malformed":
			return strings.NewReader(`{"batchItemFailures": [`), nil
		case "unknown-id":
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: "no-such-message"})
		case "empty-id":
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: ""})
		case "block":
			if err := block(arg); err != nil {
				return nil, err
			}
		}
	}
	return resp, nil
}

// first reports whether this is the first time the function sees the
// message, leaving a mark in LAMBDAFN_RECORD_DIR.
func first(id string) bool {
	dir := os.Getenv("LAMBDAFN_RECORD_DIR")
	if dir == "" {
		return true
	}
	f, err := os.OpenFile(filepath.Join(dir, ".once-"+id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}

func block(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "started"), nil, 0o600); err != nil {
		return err
	}
	// Opening a named pipe for reading waits for a writer.
	f, err := os.Open(filepath.Join(dir, "release"))
	if err != nil {
		return err
	}
	return f.Close()
}

func record(ctx context.Context, dir string, ev events.SQSEvent) error {
	began := time.Now()
	if len(ev.Records) == 0 {
		return errors.New("an event without records")
	}
	lc, ok := lambdacontext.FromContext(ctx)
	if !ok || lc.AwsRequestID == "" {
		return errors.New("no request id in the context")
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	// Written whole under another name, then renamed: a test reading the
	// directory never sees half an event.
	tmp := filepath.Join(dir, "."+lc.AwsRequestID)
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("%020d-%s.json", began.UnixNano(), lc.AwsRequestID)))
}
