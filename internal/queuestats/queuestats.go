// Package queuestats owns the queue-depth poller: on an interval it reads
// SQS's approximate counts of the queue and of its dead-letter queue into
// the sqsworker_queue_messages gauges.
package queuestats

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker/internal/metrics"
	"github.com/sqsworker/sqsworker/internal/sqsapi"
	"github.com/sqsworker/sqsworker/internal/startstop"
)

// Config configures a Poller.
type Config struct {
	// QueueURL is the queue to read. Required.
	QueueURL string
	// DLQURL is its dead-letter queue; empty means the one the queue's
	// redrive policy names, if any.
	DLQURL string
	// Interval is the time between readings; 0 turns the poller off.
	Interval time.Duration
}

// Poller reads the counts on an interval. Start it once; Stop is safe to
// call twice, or before Start.
type Poller struct {
	startstop.Lifecycle
	cfg    Config
	api    sqsapi.QueueAPI
	gauge  *prometheus.GaugeVec
	log    *zap.Logger
	cancel context.CancelFunc // ends the poll goroutine; set by Start

	// Owned by the poll goroutine.
	dlqARN, dlqURL string
	failing        bool
}

// New creates a Poller that sets gauge (labels queue and state).
func New(cfg Config, api sqsapi.QueueAPI, gauge *prometheus.GaugeVec, log *zap.Logger) *Poller {
	return &Poller{cfg: cfg, api: api, gauge: gauge, log: log.Named("queuestats"), dlqURL: cfg.DLQURL}
}

// Start reads the counts at once, then every Interval, until Stop. With
// an Interval of 0 it does nothing.
func (p *Poller) Start(ctx context.Context) error {
	if err := p.BeginStart(); err != nil {
		return err
	}
	if p.cfg.Interval <= 0 {
		p.cancel = func() {}
		p.Stopped()
		return nil
	}
	ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go p.run(ctx)
	p.log.Debug("started", zap.Duration("interval", p.cfg.Interval))
	return nil
}

// Stop ends the readings (one under way is cut short) and waits for the
// poll goroutine, or for ctx to be done.
func (p *Poller) Stop(ctx context.Context) error {
	if first, running := p.BeginStop(); first && running {
		p.cancel()
	}
	return p.Wait(ctx)
}

func (p *Poller) run(ctx context.Context) {
	defer p.Stopped()
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.read(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// read reads both queues once; a failure is logged once until it heals.
func (p *Poller) read(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(p.cfg.Interval, 5*time.Second))
	defer cancel()
	err := p.readQueues(ctx)
	switch {
	case err != nil && ctx.Err() == nil && !p.failing:
		p.failing = true
		p.log.Warn("cannot read the queue's counts; will try again every interval", zap.Duration("interval", p.cfg.Interval), zap.Error(err))
	case err == nil && p.failing:
		p.failing = false
		p.log.Info("reading the queue's counts again")
	}
}

func (p *Poller) readQueues(ctx context.Context) error {
	q, err := sqsapi.DescribeQueue(ctx, p.api, p.cfg.QueueURL)
	if err != nil {
		return err
	}
	p.set(q)
	if p.cfg.DLQURL == "" {
		if err := p.followRedrivePolicy(ctx, q.RedrivePolicy); err != nil {
			return err
		}
	}
	if p.dlqURL == "" {
		return nil
	}
	dlq, err := sqsapi.DescribeQueue(ctx, p.api, p.dlqURL)
	if err != nil {
		return err
	}
	p.set(dlq)
	return nil
}

// followRedrivePolicy keeps dlqURL the policy's target, looked up once
// per target; a dead-letter queue no longer named loses its gauges.
func (p *Poller) followRedrivePolicy(ctx context.Context, rp *sqsapi.RedrivePolicy) error {
	arn := ""
	if rp != nil {
		arn = rp.DeadLetterTargetARN
	}
	if arn == p.dlqARN {
		return nil
	}
	if p.dlqURL != "" {
		p.gauge.DeletePartialMatch(prometheus.Labels{"queue": sqsapi.QueueName(p.dlqURL)})
	}
	p.dlqARN, p.dlqURL = "", ""
	if arn == "" {
		return nil
	}
	u, err := sqsapi.QueueURLOfARN(ctx, p.api, arn)
	if err != nil {
		return err
	}
	p.dlqARN, p.dlqURL = arn, u
	return nil
}

func (p *Poller) set(q sqsapi.Queue) {
	name := q.Name()
	p.gauge.WithLabelValues(name, metrics.StateVisible).Set(float64(q.Counts.Visible))
	p.gauge.WithLabelValues(name, metrics.StateInFlight).Set(float64(q.Counts.InFlight))
	p.gauge.WithLabelValues(name, metrics.StateDelayed).Set(float64(q.Counts.Delayed))
}
