package sqsapi

import (
	"fmt"
	"strings"

	"github.com/aws/smithy-go/logging"
	"go.uber.org/zap"
)

// sdkLogger puts the SDK's own log lines (an IMDS fallback, a deprecated
// setting, a retry when its log mode asks for them) on the service's zap
// logger, so that stderr stays one JSON object per line. The SDK's default
// logger writes "SDK 2006/01/02 15:04:05 WARN …" lines of its own.
type sdkLogger struct{ log *zap.Logger }

// newSDKLogger is log, named "aws", as the SDK's logger; nil discards.
func newSDKLogger(log *zap.Logger) logging.Logger {
	if log == nil {
		return logging.Nop{}
	}
	return sdkLogger{log: log.Named("aws").WithOptions(zap.AddCallerSkip(1))}
}

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	if c == logging.Warn {
		l.log.Warn(msg)
		return
	}
	l.log.Debug(msg)
}
