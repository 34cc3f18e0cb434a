package sqsapi

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestSDKLoggerWritesZap(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	l := newSDKLogger(zap.New(core))
	l.Logf(logging.Warn, "falling back to IMDSv1: %v\n", errors.New("404"))
	l.Logf(logging.Debug, "retrying request %s", "ReceiveMessage")
	got := logs.AllUntimed()
	if len(got) != 2 || got[0].Level != zapcore.WarnLevel || got[0].Message != "falling back to IMDSv1: 404" ||
		got[0].LoggerName != "aws" || got[1].Level != zapcore.DebugLevel {
		t.Errorf("entries %+v: want a warn and a debug line from logger aws", got)
	}
	newSDKLogger(nil).Logf(logging.Warn, "dropped") // a nil logger discards
}

func TestCredentialsError(t *testing.T) {
	t.Parallel()
	imds := fmt.Errorf("failed to refresh cached credentials, no EC2 IMDS role found, %w",
		&smithy.OperationError{ServiceID: "ec2imds", OperationName: "GetMetadata", Err: errors.New("StatusCode: 404")})
	if err := credentialsError(imds); !errors.Is(err, errNoCredentials) {
		t.Errorf("credentialsError(%v) = %v, want the line saying what to set", imds, err)
	}
	sts := fmt.Errorf("failed to retrieve credentials, %w",
		&smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRoleWithWebIdentity", Err: errors.New("AccessDenied")})
	if err := credentialsError(sts); errors.Is(err, errNoCredentials) || !errors.Is(err, sts) {
		t.Errorf("credentialsError(%v) = %v, want the configured source's own error", sts, err)
	}
}
