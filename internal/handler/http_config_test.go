package handler

import (
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestNewHTTPValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     HTTPConfig
		wantErr string
	}{
		{name: "ok", cfg: HTTPConfig{URL: "http://localhost:8080/work"}},
		{name: "https", cfg: HTTPConfig{URL: "https://example.com"}},
		{name: "empty", cfg: HTTPConfig{}, wantErr: "URL"},
		{name: "relative", cfg: HTTPConfig{URL: "/work"}, wantErr: "URL"},
		{name: "no scheme", cfg: HTTPConfig{URL: "localhost:8080"}, wantErr: "URL"},
		{name: "ftp", cfg: HTTPConfig{URL: "ftp://example.com"}, wantErr: "URL"},
		{name: "unparsable", cfg: HTTPConfig{URL: "http://[::1"}, wantErr: "URL"},
		{name: "negative timeout", cfg: HTTPConfig{URL: "http://x", Timeout: -1}, wantErr: "Timeout"},
		{name: "negative concurrency", cfg: HTTPConfig{URL: "http://x", Concurrency: -1}, wantErr: "Concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := NewHTTP(tt.cfg, zap.NewNop())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewHTTP: %v", err)
				}
				h.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewHTTP error = %v; want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestQueueName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url, want string
	}{
		{name: "aws", url: "https://sqs.us-east-1.amazonaws.com/123456789012/orders", want: "orders"},
		{name: "fifo", url: "https://sqs.us-east-1.amazonaws.com/123456789012/orders.fifo", want: "orders.fifo"},
		{name: "trailing slash", url: "http://localhost:9324/000000000000/jobs/", want: "jobs"},
		{name: "empty", url: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := queueName(tt.url); got != tt.want {
				t.Errorf("queueName(%q) = %q; want %q", tt.url, got, tt.want)
			}
		})
	}
}
