package sqsapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// NotSQSError is an answer SQS never gives: a success without the field
// every success carries, or a body that is not SQS's JSON. The endpoint
// is some other server (a web application on the port, a proxy's error
// page), and going on would read its silence as an empty queue.
type NotSQSError struct {
	// Endpoint is where the request went, "" when not known.
	Endpoint string
	// Action is the SQS action asked for: GetQueueUrl.
	Action string
	// Problem is what was wrong with the answer: "returned no QueueUrl".
	Problem string
	// Err is the SDK's error, when the answer did not decode.
	Err error
}

// Describe says what answered and how, without the advice that Error
// adds: "http://127.0.0.1:8080 did not answer like SQS (GetQueueUrl
// returned no QueueUrl)".
func (e *NotSQSError) Describe() string {
	where := e.Endpoint
	if where == "" {
		where = "the SQS endpoint"
	}
	return fmt.Sprintf("%s did not answer like SQS (%s %s)", where, e.Action, e.Problem)
}

func (e *NotSQSError) Error() string { return e.Describe() + ": is the endpoint right?" }

func (e *NotSQSError) Unwrap() error { return e.Err }

// Endpoint is the endpoint c sends to when one was set, by Options or by
// the SDK's configuration (AWS_ENDPOINT_URL_SQS); "" when the SDK
// resolves AWS's own from the region.
func Endpoint(c *sqs.Client) string { return aws.ToString(c.Options().BaseEndpoint) }

// notSQS turns an error of action into a *NotSQSError when the answer
// could not have come from SQS: a response that did not decode, or an
// error answer below 500 without an error code (every SQS error carries
// one). A 5xx stays what it is: a load balancer in front of SQS may
// answer that way, and it is worth retrying.
func notSQS(err error, action string) error {
	var re *smithyhttp.ResponseError
	if err == nil || !errors.As(err, &re) || re.HTTPStatusCode() >= 500 {
		return err
	}
	endpoint := ""
	if r := re.HTTPResponse(); r != nil && r.Request != nil && r.Request.URL != nil {
		endpoint = r.Request.URL.Scheme + "://" + r.Request.URL.Host
	}
	status := re.HTTPStatusCode()
	var de *smithy.DeserializationError
	if errors.As(err, &de) {
		return &NotSQSError{Endpoint: endpoint, Action: action, Err: err,
			Problem: fmt.Sprintf("answered HTTP %d with a body that is not SQS's JSON%s", status, bodyStart(de.Snapshot))}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "UnknownError" {
		problem := fmt.Sprintf("answered HTTP %d without an SQS error code", status)
		if m := ae.ErrorMessage(); m != "" {
			problem += fmt.Sprintf(" (%q)", clip(m))
		}
		return &NotSQSError{Endpoint: endpoint, Action: action, Err: err, Problem: problem}
	}
	return err
}

// bodyStart quotes the start of a body that did not decode.
func bodyStart(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" || !utf8.ValidString(s) {
		return ""
	}
	return fmt.Sprintf(": %q", clip(s))
}

func clip(s string) string {
	const most = 40
	if r := []rune(s); len(r) > most {
		return string(r[:most]) + "…"
	}
	return s
}

// GetQueueURL looks a queue up by name (owner is the account, "" for the
// caller's) and checks that the answer is SQS's: a success without a
// queue URL is a *NotSQSError.
func GetQueueURL(ctx context.Context, api QueueAPI, name, owner string) (string, error) {
	in := &sqs.GetQueueUrlInput{QueueName: aws.String(name)}
	if owner != "" {
		in.QueueOwnerAWSAccountId = aws.String(owner)
	}
	out, err := api.GetQueueUrl(ctx, in)
	if err != nil {
		return "", notSQS(err, "GetQueueUrl")
	}
	return CheckQueueURL("GetQueueUrl", aws.ToString(out.QueueUrl))
}

// CheckQueueURL checks the queue URL an action (GetQueueUrl, CreateQueue)
// returned: SQS always returns one.
func CheckQueueURL(action, queueURL string) (string, error) {
	switch {
	case queueURL == "":
		return "", &NotSQSError{Action: action, Problem: "returned no QueueUrl"}
	case !IsQueueURL(queueURL):
		return "", &NotSQSError{Action: action, Problem: fmt.Sprintf("returned QueueUrl %q, which is not a queue URL", clip(queueURL))}
	}
	return queueURL, nil
}
