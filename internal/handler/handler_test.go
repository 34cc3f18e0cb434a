package handler

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	base := errors.New("busy")
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{name: "nil", err: nil},
		{name: "plain error", err: base},
		{name: "retry after", err: &RetryAfterError{After: 3 * time.Second, Err: base}, want: 3 * time.Second, wantOK: true},
		{name: "wrapped", err: fmt.Errorf("outer: %w", &RetryAfterError{After: time.Minute, Err: base}), want: time.Minute, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := RetryAfter(tt.err)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("RetryAfter() = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
