package sqsapi

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func responseError(status int, err error) error {
	return fmt.Errorf("operation error SQS: ReceiveMessage: %w", &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err})
}

func TestIsResponseLost(t *testing.T) {
	t.Parallel()
	cut := &smithy.DeserializationError{Err: errors.New("read tcp: use of closed network connection")}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "200 whose body was cut", err: responseError(200, cut), want: true},
		{name: "500 from the server", err: responseError(500, errors.New("internal error"))},
		{name: "400 from the server", err: responseError(400, errors.New("bad request"))},
		{name: "request never answered", err: &smithyhttp.RequestSendError{Err: errors.New("connection refused")}},
		{name: "no error", err: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := IsResponseLost(tt.err); got != tt.want {
				t.Errorf("IsResponseLost(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}
