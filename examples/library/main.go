// Command library consumes an SQS queue with a Go function, through the
// sqsworker package: what a Go program that embeds the worker looks like.
// Each message body is counted by its first word; on SIGTERM or SIGINT, or
// once the queue has been idle for --idle-timeout, it stops gracefully and
// prints the counts as JSON.
//
//	go run ./examples/library --queue orders --idle-timeout 30s
//
// The AWS configuration comes from the usual places (AWS_REGION,
// AWS_ENDPOINT_URL_SQS for a local server, credentials); metrics are served
// on --metrics-addr when it is set.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "library:", err)
		os.Exit(1)
	}
}

func run() error {
	queue := flag.String("queue", "", "queue name or URL (required)")
	concurrency := flag.Int("concurrency", 8, "handlers running at once")
	idle := flag.Duration("idle-timeout", 0, "stop once no message was received for this long (0: never)")
	metricsAddr := flag.String("metrics-addr", "", "serve /metrics and /readyz here, e.g. 127.0.0.1:9090 (empty: off)")
	flag.Parse()
	if *queue == "" {
		return fmt.Errorf("--queue is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}

	var mu sync.Mutex
	counts := map[string]int{}
	handle := func(_ context.Context, m *sqsworker.Message) error {
		word, _, _ := strings.Cut(strings.TrimSpace(m.Body), " ")
		if word == "" {
			return sqsworker.DeadLetter("empty", fmt.Errorf("message %s has an empty body", m.ID))
		}
		mu.Lock()
		counts[word]++
		mu.Unlock()
		return nil
	}

	reg := prometheus.NewRegistry()
	w, err := sqsworker.New(sqs.NewFromConfig(awsCfg), *queue, sqsworker.HandlerFunc(handle),
		&sqsworker.Config{Concurrency: *concurrency, IdleTimeout: *idle, WaitTime: min(*idle, 20*time.Second).Truncate(time.Second)},
		sqsworker.WithRegisterer(reg), sqsworker.WithLogger(zap.Must(zap.NewProduction())))
	if err != nil {
		return err
	}
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Addr: *metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.ListenAndServe() }()
		defer func() { _ = srv.Close() }()
	}
	if err := w.Run(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return json.NewEncoder(os.Stdout).Encode(counts)
}
