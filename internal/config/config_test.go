package config

import (
	"strings"
	"testing"
	"time"
)

// valid is the smallest Config that passes: the defaults, a queue URL and
// an http handler URL.
func valid() Config {
	c := Default()
	c.QueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
	c.HTTPURL = "http://127.0.0.1:8080/work"
	return c
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(c *Config)
		// wantErr is empty for a valid Config, else a flag the error names.
		wantErr string
	}{
		{name: "defaults with queue url and http url", modify: func(*Config) {}},
		{name: "queue name instead of url", modify: func(c *Config) { c.QueueURL = ""; c.Queue = "orders" }},
		{name: "local endpoint queue url", modify: func(c *Config) { c.QueueURL = "http://127.0.0.1:9324/000000000000/orders.fifo" }},
		{name: "exec handler", modify: func(c *Config) { c.Handler = "exec"; c.HTTPURL = ""; c.Exec = []string{"/bin/true"} }},
		{name: "endpoint url", modify: func(c *Config) { c.EndpointURL = "http://localhost:4566" }},
		{name: "no wait", modify: func(c *Config) { c.WaitTime = 0 }},
		{name: "largest values", modify: func(c *Config) {
			c.Concurrency, c.Fetchers, c.WaitTime = 10000, 1000, 20*time.Second
			c.VisibilityTimeout, c.MaxExtension, c.MaxProcessingTime = 12*time.Hour, 12*time.Hour, 12*time.Hour
		}},
		{name: "console debug logs", modify: func(c *Config) { c.LogLevel, c.LogFormat = "debug", "console" }},

		{name: "negative concurrency", modify: func(c *Config) { c.Concurrency = -1 }, wantErr: "--concurrency"},
		{name: "zero concurrency", modify: func(c *Config) { c.Concurrency = 0 }, wantErr: "--concurrency"},
		{name: "concurrency too large", modify: func(c *Config) { c.Concurrency = 10001 }, wantErr: "--concurrency"},
		{name: "zero fetchers", modify: func(c *Config) { c.Fetchers = 0 }, wantErr: "--fetchers"},
		{name: "prefetch too large", modify: func(c *Config) { c.Prefetch = 100001 }, wantErr: "--prefetch"},
		{name: "wait time over 20s", modify: func(c *Config) { c.WaitTime = 21 * time.Second }, wantErr: "--wait-time"},
		{name: "negative wait time", modify: func(c *Config) { c.WaitTime = -time.Second }, wantErr: "--wait-time"},
		{name: "fractional wait time", modify: func(c *Config) { c.WaitTime = 1500 * time.Millisecond }, wantErr: "--wait-time"},
		{name: "visibility 1s", modify: func(c *Config) { c.VisibilityTimeout = time.Second }, wantErr: "--visibility-timeout"},
		{name: "visibility over 12h", modify: func(c *Config) { c.VisibilityTimeout = 13 * time.Hour }, wantErr: "--visibility-timeout"},
		{name: "fractional visibility", modify: func(c *Config) { c.VisibilityTimeout = 30500 * time.Millisecond }, wantErr: "--visibility-timeout"},
		{name: "max extension below visibility", modify: func(c *Config) { c.MaxExtension = 10 * time.Second }, wantErr: "--max-extension"},
		{name: "max processing time below visibility", modify: func(c *Config) { c.MaxProcessingTime = 10 * time.Second }, wantErr: "--max-processing-time"},
		{name: "negative handler timeout", modify: func(c *Config) { c.HandlerTimeout = -time.Second }, wantErr: "--handler-timeout"},
		{name: "zero delete flush interval", modify: func(c *Config) { c.DeleteFlushInterval = 0 }, wantErr: "--delete-flush-interval"},
		{name: "backoff max below min", modify: func(c *Config) { c.RetryBackoffMax = 500 * time.Millisecond }, wantErr: "--retry-backoff-max"},
		{name: "zero http timeout", modify: func(c *Config) { c.HTTPTimeout = 0 }, wantErr: "--http-timeout"},
		{name: "short shutdown timeout", modify: func(c *Config) { c.ShutdownTimeout = 0 }, wantErr: "--shutdown-timeout"},
		{name: "bad handler", modify: func(c *Config) { c.Handler = "grpc" }, wantErr: "--handler"},
		{name: "missing http url", modify: func(c *Config) { c.HTTPURL = "" }, wantErr: "--http-url"},
		{name: "exec without command", modify: func(c *Config) { c.Handler = "exec" }, wantErr: "--exec"},
		{name: "missing queue", modify: func(c *Config) { c.QueueURL = "" }, wantErr: "--queue"},
		{name: "queue url not a url", modify: func(c *Config) { c.QueueURL = "orders" }, wantErr: "--queue-url"},
		{name: "queue url without path", modify: func(c *Config) { c.QueueURL = "https://sqs.eu-west-1.amazonaws.com/" }, wantErr: "--queue-url"},
		{name: "queue url bad scheme", modify: func(c *Config) { c.QueueURL = "ftp://sqs.eu-west-1.amazonaws.com/1/orders" }, wantErr: "--queue-url"},
		{name: "bad endpoint url", modify: func(c *Config) { c.EndpointURL = "localhost:4566" }, wantErr: "--endpoint-url"},
		{name: "bad log level", modify: func(c *Config) { c.LogLevel = "verbose" }, wantErr: "--log-level"},
		{name: "bad log format", modify: func(c *Config) { c.LogFormat = "xml" }, wantErr: "--log-format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tt.modify(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil; want an error naming %s", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q; want it to name %s", err, tt.wantErr)
			}
		})
	}
}

func TestValidatePrefetch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		concurrency  int
		prefetch     int
		wantPrefetch int
		wantLimit    int
	}{
		{name: "negative becomes concurrency", concurrency: 16, prefetch: -1, wantPrefetch: 16, wantLimit: 32},
		{name: "any negative becomes concurrency", concurrency: 3, prefetch: -7, wantPrefetch: 3, wantLimit: 6},
		{name: "zero stays zero", concurrency: 4, prefetch: 0, wantPrefetch: 0, wantLimit: 4},
		{name: "explicit stays", concurrency: 4, prefetch: 10, wantPrefetch: 10, wantLimit: 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			c.Concurrency, c.Prefetch = tt.concurrency, tt.prefetch
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if c.Prefetch != tt.wantPrefetch {
				t.Errorf("Prefetch = %d; want %d", c.Prefetch, tt.wantPrefetch)
			}
			if got := c.InFlightLimit(); got != tt.wantLimit {
				t.Errorf("InFlightLimit() = %d; want %d", got, tt.wantLimit)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	c := Default()
	if c.Concurrency != DefaultConcurrency || c.Fetchers != DefaultFetchers || c.Prefetch != -1 ||
		c.WaitTime != DefaultWaitTime || c.VisibilityTimeout != DefaultVisibilityTimeout ||
		c.Handler != DefaultHandler || c.LogLevel != DefaultLogLevel || c.LogFormat != DefaultLogFormat {
		t.Errorf("Default() = %+v; fields differ from the Default constants", c)
	}
	// The defaults alone lack only the queue and the handler URL.
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--queue") {
		t.Errorf("Default().Validate() = %v; want an error naming --queue", err)
	}
}

func TestFIFO(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		queueURL string
		queue    string
		want     bool
	}{
		{name: "standard url", queueURL: "https://sqs.eu-west-1.amazonaws.com/1/orders"},
		{name: "fifo url", queueURL: "https://sqs.eu-west-1.amazonaws.com/1/orders.fifo", want: true},
		{name: "fifo name", queue: "orders.fifo", want: true},
		{name: "standard name", queue: "orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Config{QueueURL: tt.queueURL, Queue: tt.queue}
			if got := c.FIFO(); got != tt.want {
				t.Errorf("FIFO() = %v; want %v", got, tt.want)
			}
		})
	}
}
