// Command producer is an example producer for the compose stack: it sends
// orders (the body the example handler expects) to a queue at a steady
// rate, every so often a poison one that ends in the dead-letter queue,
// each with a W3C traceparent attribute as a traced producer would send.
// It is an example, not part of sqsworker.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

type options struct {
	queue       string
	rate        float64
	count       int
	poisonEvery int
}

func main() {
	var o options
	flag.StringVar(&o.queue, "queue", "orders", "name of the queue to send to (the endpoint comes from AWS_ENDPOINT_URL_SQS)")
	flag.Float64Var(&o.rate, "rate", 20, "orders per second")
	flag.IntVar(&o.count, "count", 0, "orders to send, then exit (0: until stopped)")
	flag.IntVar(&o.poisonEvery, "poison-every", 200, "make every n-th order poison, which the example handler rejects (0: none)")
	flag.Parse()
	if o.rate <= 0 || o.count < 0 || o.poisonEvery < 0 {
		log.Fatal("producer: --rate must be above 0, --count and --poison-every 0 or more")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, o)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatalf("producer: %v", err)
	}
}

func run(ctx context.Context, o options) error {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	client := sqs.NewFromConfig(cfg)
	out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(o.queue)})
	if err != nil {
		return fmt.Errorf("look up queue %s (create it first: worker setup --queue %s): %w", o.queue, o.queue, err)
	}
	url := aws.ToString(out.QueueUrl)
	log.Printf("sending %g orders/s to %s", o.rate, url)

	// One batch of up to ten per tick, so the rate holds without a request per order.
	batch := max(1, min(10, int(o.rate)))
	tick := time.NewTicker(time.Duration(float64(time.Second) * float64(batch) / o.rate))
	defer tick.Stop()
	sent, last := 0, time.Now()
	for o.count == 0 || sent < o.count {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		n := batch
		if o.count > 0 {
			n = min(n, o.count-sent)
		}
		entries := make([]types.SendMessageBatchRequestEntry, n)
		for i := range entries {
			entries[i] = order(sent+i+1, o.poisonEvery)
		}
		res, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			log.Printf("send: %v (will try again)", err)
			continue
		}
		sent += len(res.Successful)
		if time.Since(last) >= 10*time.Second {
			log.Printf("%d orders sent", sent)
			last = time.Now()
		}
	}
	log.Printf("%d orders sent; done", sent)
	return nil
}

// order is the n-th order, with a traceparent as a traced service sends:
// a new trace whose parent is the producer's send.
func order(n, poisonEvery int) types.SendMessageBatchRequestEntry {
	body, _ := json.Marshal(map[string]any{
		"order_id":     n,
		"amount_cents": 100 + n%9900,
		"poison":       poisonEvery > 0 && n%poisonEvery == 0,
	})
	return types.SendMessageBatchRequestEntry{
		Id:          aws.String(strconv.Itoa(n)),
		MessageBody: aws.String(string(body)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"traceparent": {DataType: aws.String("String"), StringValue: aws.String("00-" + randomHex(16) + "-" + randomHex(8) + "-01")},
		},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
