// Package sqsapi builds the SQS client the worker and the tools use (and
// the SNS client setup subscribes with), counts every request it sends,
// looks queues up, and classifies SQS errors so that callers decide retry
// or give up in one place.
package sqsapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/ownbody"
)

// Options configure New.
type Options struct {
	// EndpointURL overrides the endpoint; empty uses the SDK's resolution.
	EndpointURL string
	// Region overrides the SDK's region resolution.
	Region string
	// Observer, when set, is told of every request attempt.
	Observer Observer
	// WrapTransport, when set, wraps the HTTP transport every request
	// goes through: tests put network faults below the SDK with it.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Logger receives the SDK's own log lines, named "aws"; nil discards
	// them.
	Logger *zap.Logger
}

// Observer is told of every SQS request attempt after it ends.
type Observer interface {
	ObserveRequest(action string, outcome string, d time.Duration)
}

// Request outcomes passed to Observer.
const (
	OutcomeOK        = "ok"
	OutcomeError     = "error"
	OutcomeThrottled = "throttled"
)

// New loads the AWS configuration the usual way (environment, shared
// config, instance role), checks that it yields credentials, and returns
// an SQS client that reports every attempt to opts.Observer and sends
// through ownbody.Wrap, so that no response is lost to the SDK closing a
// request body the transport still reads.
func New(ctx context.Context, opts Options) (*sqs.Client, error) {
	cfg, err := loadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		if opts.EndpointURL != "" {
			o.BaseEndpoint = aws.String(opts.EndpointURL)
		}
		o.Retryer = newRetryer()
		o.HTTPClient = opts.httpClient(o.HTTPClient)
		o.APIOptions = append(o.APIOptions, observeOption(opts.Observer)...)
	}), nil
}

// NewSNS is New for SNS, which setup subscribes queues with. EndpointURL,
// when set, is used for SNS too: a local server serves both; on AWS it
// is empty and the SDK resolves SNS's own endpoint.
func NewSNS(ctx context.Context, opts Options) (*sns.Client, error) {
	cfg, err := loadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	return sns.NewFromConfig(cfg, func(o *sns.Options) {
		if opts.EndpointURL != "" {
			o.BaseEndpoint = aws.String(opts.EndpointURL)
		}
		o.Retryer = newRetryer()
		o.HTTPClient = opts.httpClient(o.HTTPClient)
		o.APIOptions = append(o.APIOptions, observeOption(opts.Observer)...)
	}), nil
}

// ErrNoRegion is New's error when neither Options.Region nor the SDK's
// configuration (AWS_REGION, a profile) gives a region, and the endpoint
// is not a local one.
var ErrNoRegion = errors.New("no AWS region: set AWS_REGION, or Options.Region")

func loadConfig(ctx context.Context, opts Options) (aws.Config, error) {
	loadOpts := []func(*awsconfig.LoadOptions) error{awsconfig.WithLogger(newSDKLogger(opts.Logger))}
	if opts.Region != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(opts.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		// A local endpoint needs some region to sign with; AWS needs the
		// real one, which the user must give.
		if opts.EndpointURL == "" || !isLoopback(opts.EndpointURL) {
			return aws.Config{}, ErrNoRegion
		}
		cfg.Region = "us-east-1"
	}
	if err := checkCredentials(ctx, cfg); err != nil {
		return aws.Config{}, err
	}
	return cfg, nil
}

// httpClient is what a client sends through: ownbody.Wrap over the HTTP client
// the SDK resolved, or over WrapTransport's transport when a test gives
// one.
func (opts Options) httpClient(resolved aws.HTTPClient) aws.HTTPClient {
	if b, ok := resolved.(*awshttp.BuildableClient); ok {
		// The SDK keeps 10 idle connections per host; a worker has up to
		// one long poll, one delete and one visibility call in flight per
		// ten messages of its in-flight limit, and a request that finds
		// no idle connection pays a whole round trip to dial one.
		resolved = b.WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = maxIdleConns
			t.MaxIdleConns = max(t.MaxIdleConns, maxIdleConns)
		})
	}
	if opts.WrapTransport != nil {
		resolved = &http.Client{Transport: opts.WrapTransport(awshttp.NewBuildableClient().GetTransport())}
	}
	return ownbody.Wrap(resolved)
}

// maxIdleConns is how many idle connections to SQS a client keeps.
const maxIdleConns = 256

// newRetryer is the SDK's standard retryer, which retries throttles and
// 5xx, without its retry quota: that quota would stop retrying under a
// long throttle storm, which for a worker only means more code paths.
// The worker's own loops back off.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.RateLimiter = noRateLimit{}
		so.MaxAttempts = 3
	})
}

func observeOption(obs Observer) []func(*middleware.Stack) error {
	if obs == nil {
		return nil
	}
	mw := observe(obs)
	return []func(*middleware.Stack) error{func(s *middleware.Stack) error {
		return s.Finalize.Add(mw, middleware.After)
	}}
}

func isLoopback(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	h := u.Hostname()
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

// observe is a finalize middleware placed after the retry middleware, so it
// sees each attempt: SQS bills attempts, not logical calls.
func observe(obs Observer) middleware.FinalizeMiddleware {
	return middleware.FinalizeMiddlewareFunc("sqsworkerObserve",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			start := time.Now()
			out, md, err := next.HandleFinalize(ctx, in)
			outcome := OutcomeOK
			switch {
			case err == nil:
			case IsThrottle(err):
				outcome = OutcomeThrottled
			default:
				outcome = OutcomeError
			}
			obs.ObserveRequest(awsmiddleware.GetOperationName(ctx), outcome, time.Since(start))
			return out, md, err
		})
}

type noRateLimit struct{}

func (noRateLimit) GetToken(context.Context, uint) (func() error, error) {
	return func() error { return nil }, nil
}
func (noRateLimit) AddTokens(uint) error { return nil }

// Observe is a per-call option that tells obs of every attempt of the call
// it is passed to: how a client built elsewhere, with its own middleware,
// is counted like one built by New.
func Observe(obs Observer) func(*sqs.Options) {
	add := observeOption(obs)
	return func(o *sqs.Options) { o.APIOptions = append(o.APIOptions, add...) }
}
