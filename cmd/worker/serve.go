package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqsworker/sqsworker"
	"github.com/sqsworker/sqsworker/internal/config"
	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/metrics"
)

// servers are run's listeners: /metrics, /healthz and /readyz, and
// /debug/pprof/ on one of its own; either may be off (nil).
type servers struct {
	metrics, pprof *metrics.Server
}

// listen binds the listeners cfg asks for now, so that a taken port is an
// error at start-up that names its flag.
func listen(cfg config.Config, g prometheus.Gatherer, w *sqsworker.Worker) (*servers, error) {
	var s servers
	var err error
	if cfg.MetricsAddr != "" {
		ready := func() (bool, string) {
			if err := w.Ready(); err != nil {
				return false, err.Error()
			}
			return true, "ok"
		}
		if s.metrics, err = metrics.Listen(cfg.MetricsAddr, g, ready); err != nil {
			return nil, &config.FieldError{Field: "MetricsAddr", Msg: fmt.Sprintf("cannot be served: %v", err)}
		}
	}
	if addr := cfg.PprofListenAddr(); addr != "" {
		if s.pprof, err = metrics.ListenPprof(addr); err != nil {
			s.stop(context.Background()) // closes the metrics listener
			return nil, &config.FieldError{Field: "PprofAddr", Msg: fmt.Sprintf("cannot be served: %v", err)}
		}
	}
	return &s, nil
}

func (s *servers) start(ctx context.Context) {
	for _, srv := range []*metrics.Server{s.metrics, s.pprof} {
		if srv != nil {
			_ = srv.Start(ctx) // a server just listened: never started before
		}
	}
}

// stop closes the listeners, the last thing run does: the metrics stay
// scrapable through the shutdown.
func (s *servers) stop(ctx context.Context) {
	for _, srv := range []*metrics.Server{s.metrics, s.pprof} {
		if srv != nil {
			_ = srv.Stop(ctx)
		}
	}
}

// metricsFailed is closed when the metrics server failed; never without one.
func (s *servers) metricsFailed() <-chan struct{} {
	if s.metrics == nil {
		return nil
	}
	return s.metrics.Failed()
}

func (s *servers) metricsAddr() string { return addrOf(s.metrics) }
func (s *servers) pprofAddr() string   { return addrOf(s.pprof) }

func addrOf(s *metrics.Server) string {
	if s == nil {
		return ""
	}
	return s.Addr()
}

// builtin is a built-in handler (http, exec, lambda, and their SNS unwrap
// and tracing) as the public package takes it: the package runs the
// handler Internal returns as it is, batches included.
type builtin struct{ h handler.Handler }

// Internal is the built-in handler itself.
func (b builtin) Internal() handler.Handler { return b.h }

// HandleMessage is the handler for a caller that has only the public
// message, without its receipt handle; the public package never is one.
func (b builtin) HandleMessage(ctx context.Context, m *sqsworker.Message) error {
	return b.h.Handle(ctx, &message.Message{
		ID: m.ID, Body: m.Body, QueueURL: m.QueueURL,
		ReceivedAt: m.ReceivedAt, ReceiveCount: m.ReceiveCount, FirstReceivedAt: m.FirstReceivedAt, SentAt: m.SentAt,
		GroupID: m.GroupID, DeduplicationID: m.DeduplicationID,
		SystemAttributes: m.Attributes, Attributes: m.MessageAttributes,
	})
}

// publicConfig is the pipeline's part of cfg as the public package takes
// it. The command line writes "none" as 0 (no prefetch, short polls, no
// retry delay, no queue counts) where the package writes a negative
// value, and -1 prefetch (as many as --concurrency) as 0.
func publicConfig(cfg config.Config) *sqsworker.Config {
	d := cfg.Downstream
	return &sqsworker.Config{
		Concurrency: cfg.Concurrency, Fetchers: cfg.Fetchers, Prefetch: prefetch(cfg.Prefetch),
		WaitTime: zeroAsNone(cfg.WaitTime), VisibilityTimeout: cfg.VisibilityTimeout,
		MaxExtension: cfg.MaxExtension, MaxProcessingTime: cfg.MaxProcessingTime, HandlerTimeout: cfg.HandlerTimeout,
		DeleteFlushInterval: cfg.DeleteFlushInterval, RetryBackoffMin: zeroAsNone(cfg.RetryBackoffMin),
		RetryBackoffMax: cfg.RetryBackoffMax, ShutdownTimeout: cfg.ShutdownTimeout, IdleTimeout: cfg.IdleTimeout,
		MaxMessages: cfg.MaxMessages, QueueStatsInterval: zeroAsNone(cfg.QueueStatsInterval), DeadLetterQueueURL: cfg.DLQURL,
		Downstream: sqsworker.DownstreamConfig{
			DisableBreaker: !d.Breaker, BreakerMinFailures: d.BreakerMinFailures, BreakerFailureRate: d.BreakerFailureRate,
			BreakerWindow: d.BreakerWindow, BreakerMaxProbeInterval: d.BreakerMaxProbeInterval, HealthURL: d.HealthURL,
			DisableAdaptiveConcurrency: !d.AdaptiveConcurrency, MaxRate: d.MaxRate, MaxRateBurst: d.MaxRateBurst,
		},
	}
}

func prefetch(n int) int {
	switch n {
	case config.DefaultPrefetch:
		return 0
	case 0:
		return -1
	}
	return n
}

func zeroAsNone[T ~int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}
