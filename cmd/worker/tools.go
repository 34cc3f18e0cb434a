package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// target is the queue a tool works on, named the way run names its queue.
type target struct {
	QueueURL    string
	Queue       string
	EndpointURL string
	Region      string
}

func (t *target) flags(f *flagSet, what string) {
	f.bind(t)
	queueFlags(f, &t.QueueURL, &t.Queue, &t.EndpointURL, &t.Region, what)
}

// open builds the SQS client and looks the queue up, failing in one line
// when it is missing or the endpoint does not answer.
func (t *target) open(ctx context.Context) (*sqs.Client, sqsapi.Queue, error) {
	if t.QueueURL == "" && t.Queue == "" {
		return nil, sqsapi.Queue{}, usageErr(fmt.Errorf("--queue-url or --queue is required: the queue to work on"))
	}
	if t.QueueURL != "" && !sqsapi.IsQueueURL(t.QueueURL) {
		return nil, sqsapi.Queue{}, usageErr(fmt.Errorf("--queue-url %q is not a queue URL: want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME", t.QueueURL))
	}
	client, err := t.client(ctx)
	if err != nil {
		return nil, sqsapi.Queue{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	q, err := sqsapi.ResolveQueue(rctx, client, sqsapi.QueueRef{URL: t.QueueURL, Name: t.Queue}, t.EndpointURL)
	return client, q, err
}

func (t *target) client(ctx context.Context) (*sqs.Client, error) {
	return sqsapi.New(ctx, sqsapi.Options{EndpointURL: t.EndpointURL, Region: t.Region})
}

// rateFlag is a rate in messages per second: "100" or "100/s".
type rateFlag struct{ rate *float64 }

func (r rateFlag) String() string {
	if r.rate == nil || *r.rate == 0 {
		return ""
	}
	return strconv.FormatFloat(*r.rate, 'f', -1, 64) + "/s"
}

func (r rateFlag) Set(v string) error {
	n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "/s"), 64)
	if err != nil || !(n > 0) || n > 1e9 {
		return fmt.Errorf("want messages per second above 0, such as 100 or 100/s (leave the flag out for no limit)")
	}
	*r.rate = n
	return nil
}

// count formats n with thousands separators: 12,345.
func count(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// plural is "1 topic", "2 topics".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return count(n) + " " + word + "s"
}
