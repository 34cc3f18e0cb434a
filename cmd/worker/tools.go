package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sqsworker/sqsworker/internal/sqsapi"
)

// target is the queue a tool works on, named the way run names its
// queue: by URL or by name. (Its fields are not called QueueURL, the name
// of the tools' own resolved-queue fields, so that a problem with those
// is never blamed on --queue-url.)
type target struct {
	URL         string
	Name        string
	EndpointURL string
	Region      string
}

func (t *target) flags(f *flagSet, what string) {
	f.bind(t)
	queueFlags(f, &t.URL, &t.Name, &t.EndpointURL, &t.Region, what)
}

// open builds the SQS client and looks the queue up, failing in one line
// when it is missing, the endpoint does not answer, or what answers is
// not SQS. The queue it returns always has a URL.
func (t *target) open(ctx context.Context) (*sqs.Client, sqsapi.Queue, error) {
	ref, err := t.ref()
	if err != nil {
		return nil, sqsapi.Queue{}, err
	}
	client, err := t.client(ctx)
	if err != nil {
		return nil, sqsapi.Queue{}, err
	}
	q, err := t.resolve(ctx, client, ref)
	return client, q, err
}

// ref is the queue the flags name, one way.
func (t *target) ref() (sqsapi.QueueRef, error) {
	switch {
	case t.URL == "" && t.Name == "":
		return sqsapi.QueueRef{}, usageErr(errors.New("--queue-url or --queue is required: the queue to work on"))
	case t.URL != "" && t.Name != "":
		return sqsapi.QueueRef{}, usageErr(fmt.Errorf("--queue-url %s and --queue %s both name the queue: drop one", t.URL, t.Name))
	case t.URL != "" && !sqsapi.IsQueueURL(t.URL):
		return sqsapi.QueueRef{}, usageErr(fmt.Errorf("--queue-url %q is not a queue URL: want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME", t.URL))
	}
	return sqsapi.QueueRef{URL: t.URL, Name: t.Name}, nil
}

// resolve looks up a queue the tool names (its own, or redrive's --to)
// at the client's endpoint.
func (t *target) resolve(ctx context.Context, client *sqs.Client, ref sqsapi.QueueRef) (sqsapi.Queue, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return sqsapi.ResolveQueue(ctx, client, ref, sqsapi.Endpoint(client))
}

func (t *target) client(ctx context.Context) (*sqs.Client, error) {
	return sqsapi.New(ctx, sqsapi.Options{EndpointURL: t.EndpointURL, Region: t.Region})
}

// notSQS explains a *sqsapi.NotSQSError in err, returned after the queue
// was resolved (by a look-up that cannot tell where its answer came
// from), naming the client's endpoint.
func (t *target) notSQS(err error, client *sqs.Client) error {
	return explainNotSQS(err, sqsapi.Endpoint(client), t.EndpointURL != "")
}

// explainSQS says what to do about the SQS client's start-up errors in
// terms of flags: a missing region is a usage error naming --region; an
// endpoint that is not SQS is named, with the flag that set it.
func explainSQS(f *flagSet, err error) error {
	if errors.Is(err, sqsapi.ErrNoRegion) {
		return usageErr(errors.New("no AWS region: set --region or AWS_REGION"))
	}
	given := ""
	if fl := f.fs.Lookup("endpoint-url"); fl != nil {
		given = fl.Value.String()
	}
	return explainNotSQS(err, given, given != "")
}

// explainNotSQS rewrites the *sqsapi.NotSQSError in err, if there is one,
// to name endpoint where it names none, and to ask about the flag or the
// variables that set it.
func explainNotSQS(err error, endpoint string, flagGiven bool) error {
	var ns *sqsapi.NotSQSError
	if !errors.As(err, &ns) {
		return err
	}
	named := *ns
	if named.Endpoint == "" {
		named.Endpoint = endpoint
	}
	hint := "is the endpoint right (--endpoint-url, else AWS_ENDPOINT_URL_SQS or AWS_ENDPOINT_URL)?"
	if flagGiven {
		hint = "is --endpoint-url right?"
	}
	return errors.New(strings.Replace(err.Error(), ns.Error(), named.Describe()+": "+hint, 1))
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
