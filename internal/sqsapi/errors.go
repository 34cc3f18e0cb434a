package sqsapi

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Error codes SQS uses that the worker treats specially.
const (
	CodeReceiptHandleIsInvalid = "ReceiptHandleIsInvalid"
	CodeMessageNotInflight     = "MessageNotInflight"
	CodeInvalidParameterValue  = "InvalidParameterValue"
)

var throttleCodes = map[string]bool{
	"RequestThrottled":                       true,
	"ThrottlingException":                    true,
	"Throttling":                             true,
	"TooManyRequestsException":               true,
	"KmsThrottled":                           true,
	"RequestThrottledException":              true,
	"ProvisionedThroughputExceededException": true,
}

// IsThrottle reports whether SQS asked us to slow down.
func IsThrottle(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && throttleCodes[ae.ErrorCode()] {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == 429
}

// IsTransient reports whether err is worth retrying as it is: throttling,
// a 5xx, or a network error.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if IsThrottle(err) {
		return true
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorFault() == smithy.FaultServer
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection reset")
}

// IsResponseLost reports whether SQS answered a request with success but
// its response could not be read to the end (a connection cut under the
// body, a body that does not decode). Whatever the request asked for was
// done: the messages a receive was handed are in flight, invisible until
// their visibility timeout ends, and sending the request again cannot
// bring them back.
func IsResponseLost(err error) bool {
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	s := re.HTTPStatusCode()
	return s >= 200 && s < 300
}

// IsQueueMissing reports whether the queue does not exist.
func IsQueueMissing(err error) bool {
	var qdne *types.QueueDoesNotExist
	if errors.As(err, &qdne) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "AWS.SimpleQueueService.NonExistentQueue" || ae.ErrorCode() == "QueueDoesNotExist")
}

// IsHandleGone reports whether a batch entry's error code means the
// receipt handle no longer holds the message: its lease is lost.
func IsHandleGone(code string) bool {
	return code == CodeReceiptHandleIsInvalid || code == CodeMessageNotInflight ||
		code == "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
}

// IsEntryTransient reports whether a failed batch entry may succeed if sent
// again: SQS marks those that are not the sender's fault.
func IsEntryTransient(e types.BatchResultErrorEntry) bool {
	if e.SenderFault {
		return false
	}
	return !IsHandleGone(deref(e.Code))
}

// EntryCode returns a failed entry's code, "unknown" when absent.
func EntryCode(e types.BatchResultErrorEntry) string {
	if c := deref(e.Code); c != "" {
		return c
	}
	return "unknown"
}

// EntryError describes a failed entry for a log line.
func EntryError(e types.BatchResultErrorEntry) string {
	if m := deref(e.Message); m != "" {
		return EntryCode(e) + ": " + m
	}
	return EntryCode(e)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
