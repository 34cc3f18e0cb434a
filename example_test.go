package sqsworker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sqsworker/sqsworker"
)

// New checks the Config and makes no SQS call: a bad setting is its error,
// naming the field; a missing queue is Start's.
func ExampleNew() {
	client := sqs.New(sqs.Options{Region: "eu-west-1"})
	h := sqsworker.HandlerFunc(func(context.Context, *sqsworker.Message) error { return nil })

	_, err := sqsworker.New(client, "orders", h, &sqsworker.Config{Concurrency: 20000})
	fmt.Println(err)

	w, err := sqsworker.New(client, "orders", h, nil) // nil: every default
	fmt.Println(err, w.QueueURL() == "")
	// Output:
	// Concurrency is 20000: it must be between 1 and 10000
	// <nil> true
}

// Consume a queue with a Go function until SIGTERM, then stop gracefully.
func ExampleWorker_Run() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Print(err)
		return
	}
	w, err := sqsworker.New(sqs.NewFromConfig(awsCfg), "orders",
		sqsworker.HandlerFunc(func(ctx context.Context, m *sqsworker.Message) error {
			log.Printf("order %s: %s", m.ID, m.Body)
			return nil // deleted; an error would retry it
		}),
		&sqsworker.Config{Concurrency: 32, VisibilityTimeout: time.Minute})
	if err != nil {
		log.Print(err)
		return
	}
	if err := w.Run(ctx); err != nil {
		log.Print(err)
	}
}

// Start and stop a worker yourself: Stop lets running handlers finish,
// StopAndCancel cancels them; both hand unfinished messages back to SQS.
func ExampleWorker_Stop() {
	ctx := context.Background()
	awsCfg, _ := config.LoadDefaultConfig(ctx)
	w, err := sqsworker.New(sqs.NewFromConfig(awsCfg), "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
		sqsworker.HandlerFunc(func(context.Context, *sqsworker.Message) error { return nil }), nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err) // the queue is missing, or the endpoint is not SQS
	}
	// ... later, on shutdown:
	stopCtx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := w.Stop(stopCtx); err != nil {
		_ = w.StopAndCancel(ctx) // out of patience
	}
}

// Metrics on your own registry, served where you choose, and logs to zap.
func ExampleWithRegisterer() {
	ctx := context.Background()
	awsCfg, _ := config.LoadDefaultConfig(ctx)
	reg := prometheus.NewRegistry()
	w, err := sqsworker.New(sqs.NewFromConfig(awsCfg), "orders",
		sqsworker.HandlerFunc(func(context.Context, *sqsworker.Message) error { return nil }), nil,
		sqsworker.WithRegisterer(reg), sqsworker.WithLogger(zap.Must(zap.NewProduction())))
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	http.HandleFunc("/readyz", func(rw http.ResponseWriter, _ *http.Request) {
		if err := w.Ready(); err != nil {
			http.Error(rw, err.Error(), http.StatusServiceUnavailable)
		}
	})
	go func() { _ = http.ListenAndServe("127.0.0.1:9090", nil) }() //nolint:gosec // an example
	_ = w.Run(ctx)
}

var errPaymentDeclined = errors.New("payment declined")

// Tell the worker what a failure means: retry later, dead-letter now, or
// the downstream is down (hold the message, open the breaker).
func ExampleHandlerFunc() {
	charge := func(context.Context, string) (*http.Response, error) { return nil, errPaymentDeclined }
	h := sqsworker.HandlerFunc(func(ctx context.Context, m *sqsworker.Message) error {
		resp, err := charge(ctx, m.Body)
		if err == nil {
			defer func() { _ = resp.Body.Close() }()
		}
		switch {
		case errors.Is(err, errPaymentDeclined):
			return sqsworker.DeadLetter("declined", err) // never succeeds: to the DLQ now
		case err != nil:
			return sqsworker.Unavailable(err) // the payment service is down
		case resp.StatusCode == http.StatusTooManyRequests:
			return sqsworker.Overloaded(errors.New("rate limited"))
		case resp.StatusCode >= 500:
			return sqsworker.RetryAfter(30*time.Second, errors.New(resp.Status))
		}
		return nil
	})
	_ = h
}
