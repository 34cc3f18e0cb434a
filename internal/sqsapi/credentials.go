package sqsapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
)

// credentialsTimeout bounds the first look-up of credentials at start-up;
// the SDK's own timeouts for the instance metadata service are shorter.
const credentialsTimeout = 15 * time.Second

// errNoCredentials says what to set when the SDK's default chain found
// nothing: no keys in the environment, no profile, no container or pod
// credentials, and no role from the instance metadata service.
var errNoCredentials = errors.New("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (environment), " +
	"or AWS_PROFILE (a profile in ~/.aws/config), or run with a role (EKS pod identity or IRSA, ECS task role, EC2 instance profile)")

// checkCredentials retrieves credentials once, at start-up, so that a
// process without any fails in one line that says what to set, rather than
// on its first request with the SDK's nested error from the last source it
// tried, the instance metadata service. What it retrieves is cached for
// the client.
func checkCredentials(ctx context.Context, cfg aws.Config) error {
	if cfg.Credentials == nil {
		return errNoCredentials
	}
	ctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return credentialsError(err)
	}
	return nil
}

// credentialsError turns the default chain's failure into one line. When
// the chain got as far as the instance metadata service, nothing else was
// configured: say what to set. Otherwise a source was configured and
// failed (a profile, a web identity token, SSO): say which, with its error.
func credentialsError(err error) error {
	var op *smithy.OperationError
	if errors.As(err, &op) && op.ServiceID == "ec2imds" {
		return errNoCredentials
	}
	return fmt.Errorf("get AWS credentials: %w", err)
}
