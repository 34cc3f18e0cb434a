package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// LambdaConfig configures the Lambda invoker.
type LambdaConfig struct {
	// Function is the function's name, name:alias or ARN. Required. The
	// runtime interface emulator answers to the name "function".
	Function string
	// EndpointURL overrides the Lambda endpoint. Defaults to the SDK's
	// resolution (AWS_ENDPOINT_URL_LAMBDA, AWS_ENDPOINT_URL, the region).
	EndpointURL string
	// Region overrides AWS_REGION. Defaults to the SDK's resolution.
	Region string
}

// Lambda invokes a function synchronously (RequestResponse) with an SQS
// event, through the SDK: the default credential chain and SigV4 reach a
// real function; an endpoint URL reaches the runtime interface emulator.
type Lambda struct {
	client   *lambda.Client
	function string
}

// NewLambda loads the SDK's configuration and builds the invoker. The
// SDK does not retry an invocation: a batch that failed comes back
// through the worker's own retries, with their backoff and dead-letter
// queue.
func NewLambda(ctx context.Context, cfg LambdaConfig) (*Lambda, error) {
	if cfg.Function == "" {
		return nil, errors.New("lambda handler: Function is required")
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("lambda handler: load AWS configuration: %w", err)
	}
	client := lambda.NewFromConfig(awsCfg, func(o *lambda.Options) {
		if cfg.EndpointURL != "" {
			o.BaseEndpoint = aws.String(cfg.EndpointURL)
		}
		o.RetryMaxAttempts = 1
	})
	return &Lambda{client: client, function: cfg.Function}, nil
}

// Invoke sends event and returns the function's answer. A function error
// (X-Amz-Function-Error) is a *FunctionError; throttling and a busy
// runtime are Unavailable(overloaded); no answer and Lambda's own
// failures are Unavailable.
func (l *Lambda) Invoke(ctx context.Context, event []byte) ([]byte, error) {
	out, err := l.client.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(l.function),
		InvocationType: types.InvocationTypeRequestResponse,
		Payload:        event,
	})
	if err != nil {
		return nil, classifyInvokeError(ctx, l.function, err)
	}
	if out.FunctionError != nil {
		fe := &FunctionError{Type: *out.FunctionError}
		if t := errorType(out.Payload); t != "" {
			fe.Type = t
		}
		return nil, fe
	}
	return out.Payload, nil
}

// errorType is the errorType of a runtime's error object, "" if none.
func errorType(payload []byte) string {
	_, err := ParseBatchResponse(payload, nil)
	var fe *FunctionError
	if errors.As(err, &fe) {
		return fe.Type
	}
	return ""
}

// classifyInvokeError tells the downstream's failures from the batch's.
// Asked to slow down: Lambda's throttling (429), and the emulator's
// answer while it runs another invocation (400, Runtime.Unavailable, or
// no error code at all). Not there: no response, 5xx but 502. A 502 is a
// runtime that crashed on the batch: the batch's failure.
func classifyInvokeError(ctx context.Context, function string, err error) error {
	what := fmt.Errorf("invoke %s: %w", function, err)
	if ctx.Err() != nil {
		return what
	}
	var tooMany *types.TooManyRequestsException
	if errors.As(err, &tooMany) {
		return Unavailable(what, true)
	}
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil {
		return Unavailable(what, false)
	}
	status := re.HTTPStatusCode()
	var apiErr smithy.APIError
	code := ""
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	switch {
	case status == http.StatusTooManyRequests:
		return Unavailable(what, true)
	case status == http.StatusBadRequest && (code == "Runtime.Unavailable" || code == "" || strings.EqualFold(code, "UnknownError")):
		return Unavailable(what, true)
	case status == http.StatusBadGateway:
		return &FunctionError{Type: "Runtime.ExitError (" + err.Error() + ")"}
	case status >= 500:
		return Unavailable(what, false)
	}
	return what
}
