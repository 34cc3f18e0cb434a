package config

import (
	"errors"
	"fmt"
	"net"
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
		// wantErr is empty for a valid Config, else the field the error names.
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

		{name: "negative concurrency", modify: func(c *Config) { c.Concurrency = -1 }, wantErr: "Concurrency"},
		{name: "zero concurrency", modify: func(c *Config) { c.Concurrency = 0 }, wantErr: "Concurrency"},
		{name: "concurrency too large", modify: func(c *Config) { c.Concurrency = 10001 }, wantErr: "Concurrency"},
		{name: "negative fetchers", modify: func(c *Config) { c.Fetchers = -1 }, wantErr: "Fetchers"},
		{name: "prefetch too large", modify: func(c *Config) { c.Prefetch = 100001 }, wantErr: "Prefetch"},
		{name: "wait time over 20s", modify: func(c *Config) { c.WaitTime = 21 * time.Second }, wantErr: "WaitTime"},
		{name: "negative wait time", modify: func(c *Config) { c.WaitTime = -time.Second }, wantErr: "WaitTime"},
		{name: "fractional wait time", modify: func(c *Config) { c.WaitTime = 1500 * time.Millisecond }, wantErr: "WaitTime"},
		{name: "visibility 1s", modify: func(c *Config) { c.VisibilityTimeout = time.Second }, wantErr: "VisibilityTimeout"},
		{name: "visibility over 12h", modify: func(c *Config) { c.VisibilityTimeout = 13 * time.Hour }, wantErr: "VisibilityTimeout"},
		{name: "fractional visibility", modify: func(c *Config) { c.VisibilityTimeout = 30500 * time.Millisecond }, wantErr: "VisibilityTimeout"},
		{name: "max extension below visibility", modify: func(c *Config) { c.MaxExtension = 10 * time.Second }, wantErr: "MaxExtension"},
		{name: "max processing time below visibility", modify: func(c *Config) { c.MaxProcessingTime = 10 * time.Second }, wantErr: "MaxProcessingTime"},
		{name: "negative handler timeout", modify: func(c *Config) { c.HandlerTimeout = -time.Second }, wantErr: "HandlerTimeout"},
		{name: "zero delete flush interval", modify: func(c *Config) { c.DeleteFlushInterval = 0 }, wantErr: "DeleteFlushInterval"},
		{name: "backoff max below min", modify: func(c *Config) { c.RetryBackoffMax = 500 * time.Millisecond }, wantErr: "RetryBackoffMax"},
		{name: "zero http timeout", modify: func(c *Config) { c.HTTPTimeout = 0 }, wantErr: "HTTPTimeout"},
		{name: "short shutdown timeout", modify: func(c *Config) { c.ShutdownTimeout = 0 }, wantErr: "ShutdownTimeout"},
		{name: "bad handler", modify: func(c *Config) { c.Handler = "grpc" }, wantErr: "Handler"},
		{name: "missing http url", modify: func(c *Config) { c.HTTPURL = "" }, wantErr: "HTTPURL"},
		{name: "exec without command", modify: func(c *Config) { c.Handler = "exec" }, wantErr: "Exec"},
		{name: "missing queue", modify: func(c *Config) { c.QueueURL = "" }, wantErr: "Queue"},
		{name: "queue by url and by name", modify: func(c *Config) { c.Queue = "orders-dlq" }, wantErr: "QueueURL or Queue names the queue, not both"},
		{name: "queue url not a url", modify: func(c *Config) { c.QueueURL = "orders" }, wantErr: "QueueURL"},
		{name: "queue url without path", modify: func(c *Config) { c.QueueURL = "https://sqs.eu-west-1.amazonaws.com/" }, wantErr: "QueueURL"},
		{name: "queue url bad scheme", modify: func(c *Config) { c.QueueURL = "ftp://sqs.eu-west-1.amazonaws.com/1/orders" }, wantErr: "QueueURL"},
		{name: "bad endpoint url", modify: func(c *Config) { c.EndpointURL = "localhost:4566" }, wantErr: "EndpointURL"},
		{name: "bad log level", modify: func(c *Config) { c.LogLevel = "verbose" }, wantErr: "LogLevel"},
		{name: "bad log format", modify: func(c *Config) { c.LogFormat = "xml" }, wantErr: "LogFormat"},
		{name: "negative exec timeout", modify: func(c *Config) { c.Handler = "exec"; c.Exec = []string{"/bin/true"}; c.ExecTimeout = -time.Second }, wantErr: "ExecTimeout"},
		{name: "zero exec output limit", modify: func(c *Config) { c.Handler = "exec"; c.Exec = []string{"/bin/true"}; c.ExecOutputLimit = 0 }, wantErr: "ExecOutputLimit"},
		{name: "prefetch below -1", modify: func(c *Config) { c.Prefetch = -2 }, wantErr: "Prefetch"},

		{name: "metrics on all interfaces", modify: func(c *Config) { c.MetricsAddr = ":9090" }},
		{name: "metrics off", modify: func(c *Config) { c.MetricsAddr = "" }},
		{name: "metrics on a named host", modify: func(c *Config) { c.MetricsAddr = "localhost:0" }},
		{name: "pprof address", modify: func(c *Config) { c.PprofAddr = "[::1]:6060" }},
		{name: "metrics address without port", modify: func(c *Config) { c.MetricsAddr = "127.0.0.1" }, wantErr: "MetricsAddr"},
		{name: "metrics address with two colons", modify: func(c *Config) { c.MetricsAddr = "bad:addr:here" }, wantErr: "MetricsAddr"},
		{name: "metrics port not a number", modify: func(c *Config) { c.MetricsAddr = ":metrics" }, wantErr: "MetricsAddr"},
		{name: "metrics port too large", modify: func(c *Config) { c.MetricsAddr = ":65536" }, wantErr: "MetricsAddr"},
		{name: "bad pprof address", modify: func(c *Config) { c.PprofAddr = "6060" }, wantErr: "PprofAddr"},
		{name: "http url not absolute", modify: func(c *Config) { c.HTTPURL = "localhost:8080" }, wantErr: "HTTPURL"},
		{name: "http url does not parse", modify: func(c *Config) { c.HTTPURL = "http://[::1" }, wantErr: "HTTPURL"},
		{name: "exec with the http handler", modify: func(c *Config) { c.Exec = []string{"/bin/true"} }, wantErr: "Exec is set but Handler is http: add Handler exec"},
		{name: "exec env names", modify: func(c *Config) {
			c.Handler, c.HTTPURL, c.Exec, c.ExecEnv = "exec", "", []string{"/bin/true"}, []string{"AWS_REGION", "MY_*"}
		}},
		{name: "bad exec env name", modify: func(c *Config) {
			c.Handler, c.HTTPURL, c.Exec, c.ExecEnv = "exec", "", []string{"/bin/true"}, []string{"AWS_*_KEY"}
		}, wantErr: "ExecEnv"},
		{name: "sns topics", modify: func(c *Config) {
			c.UnwrapSNS, c.SNSTopicARNs = true, []string{"arn:aws:sns:eu-west-1:123456789012:orders"}
		}},
		{name: "sns topics without unwrap", modify: func(c *Config) {
			c.SNSTopicARNs = []string{"arn:aws:sns:eu-west-1:123456789012:orders"}
		}, wantErr: "SNSTopicARNs is set but UnwrapSNS is off"},
		{name: "bad sns topic", modify: func(c *Config) { c.UnwrapSNS, c.SNSTopicARNs = true, []string{"orders"} }, wantErr: "SNSTopicARNs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tt.modify(&c)
			before := fmt.Sprintf("%+v", c)
			err := c.Validate()
			if err == nil {
				err = c.ValidateHandler()
			}
			if after := fmt.Sprintf("%+v", c); after != before {
				t.Errorf("validation changed the Config:\n%s\nto\n%s", before, after)
			}
			var fe *FieldError
			if err != nil && !errors.As(err, &fe) {
				t.Errorf("error %q is not a *FieldError", err)
			}
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
		{name: "-1 means concurrency", concurrency: 16, prefetch: -1, wantPrefetch: 16, wantLimit: 32},
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
			if got := c.PrefetchOrDefault(); got != tt.wantPrefetch {
				t.Errorf("PrefetchOrDefault() = %d; want %d", got, tt.wantPrefetch)
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
	if err == nil || err.Error() != "QueueURL or Queue is required: the queue to consume" {
		t.Errorf("Default().Validate() = %v; want the error naming QueueURL or Queue", err)
	}
}

// TestListenersOnLoopbackByDefault: nothing is served beyond the host
// unless asked; pprof only when asked, and then on loopback too.
func TestListenersOnLoopbackByDefault(t *testing.T) {
	t.Parallel()
	c := Default()
	for name, addr := range map[string]string{"MetricsAddr": c.MetricsAddr, "DefaultPprofAddr": DefaultPprofAddr} {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("%s %q: want a loopback address", name, addr)
		}
	}
	tests := []struct {
		name      string
		pprof     bool
		pprofAddr string
		want      string
	}{
		{name: "off by default"},
		{name: "on", pprof: true, want: DefaultPprofAddr},
		{name: "an address turns it on", pprofAddr: "127.0.0.1:7070", want: "127.0.0.1:7070"},
		{name: "on at an address", pprof: true, pprofAddr: ":7070", want: ":7070"},
	}
	for _, tt := range tests {
		c := Config{Pprof: tt.pprof, PprofAddr: tt.pprofAddr}
		if got := c.PprofListenAddr(); got != tt.want {
			t.Errorf("%s: PprofListenAddr() = %q; want %q", tt.name, got, tt.want)
		}
	}
}

func TestFieldErrorNamesOtherFields(t *testing.T) {
	t.Parallel()
	fe := &FieldError{Field: "Exec", Msg: "is set but {Handler} is http: add {Handler} exec"}
	got := fe.Format(func(f string) string { return "--" + strings.ToLower(f) })
	if want := "--exec is set but --handler is http: add --handler exec"; got != want {
		t.Errorf("Format = %q; want %q", got, want)
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
			c := Pipeline{QueueURL: tt.queueURL, Queue: tt.queue}
			if got := c.FIFO(); got != tt.want {
				t.Errorf("FIFO() = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestMaxFetchers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                            string
		fetchers, concurrency, prefetch int
		want                            int
	}{
		{name: "pinned", fetchers: 3, concurrency: 200, prefetch: -1, want: 3},
		{name: "adaptive fills the in-flight limit", concurrency: 200, prefetch: -1, want: 40},
		{name: "adaptive rounds up", concurrency: 16, prefetch: 5, want: 3},
		{name: "adaptive at least one", concurrency: 1, prefetch: 0, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Pipeline{Fetchers: tt.fetchers, Concurrency: tt.concurrency, Prefetch: tt.prefetch}
			if got := c.MaxFetchers(); got != tt.want {
				t.Errorf("MaxFetchers() = %d; want %d", got, tt.want)
			}
		})
	}
}
