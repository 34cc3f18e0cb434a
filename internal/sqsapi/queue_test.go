package sqsapi

import "testing"

func TestParseRedrivePolicy(t *testing.T) {
	t.Parallel()
	const dlq = "arn:aws:sqs:us-east-1:000000000000:dlq"
	for _, tt := range []struct {
		name   string
		policy string
		want   int // max receive count; -1: no policy
	}{
		{"none", "", -1},
		{"number", `{"deadLetterTargetArn":"` + dlq + `","maxReceiveCount":3}`, 3},
		{"string", `{"deadLetterTargetArn":"` + dlq + `","maxReceiveCount":"5"}`, 5},
		{"not a number", `{"maxReceiveCount":"x"}`, -1},
		{"not json", `not json`, -1},
		{"negative", `{"maxReceiveCount":-1}`, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseRedrivePolicy(tt.policy)
			switch {
			case tt.want < 0 && got != nil:
				t.Errorf("ParseRedrivePolicy(%q) = %+v; want nil", tt.policy, got)
			case tt.want >= 0 && (got == nil || got.MaxReceiveCount != tt.want || got.DeadLetterTargetARN != dlq):
				t.Errorf("ParseRedrivePolicy(%q) = %+v; want %d receives to %s", tt.policy, got, tt.want, dlq)
			}
		})
	}
}

func TestQueueRef(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want QueueRef
	}{
		{"orders", QueueRef{Name: "orders"}},
		{"orders.fifo", QueueRef{Name: "orders.fifo"}},
		{"https://sqs.eu-west-1.amazonaws.com/123456789012/orders", QueueRef{URL: "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"}},
		{"http://127.0.0.1:4566/000000000000/orders", QueueRef{URL: "http://127.0.0.1:4566/000000000000/orders"}},
		{"http://127.0.0.1:4566/", QueueRef{Name: "http://127.0.0.1:4566/"}},
	} {
		if got := ParseQueueRef(tt.in); got != tt.want {
			t.Errorf("ParseQueueRef(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
	}
	for in, want := range map[string]string{
		"https://sqs.eu-west-1.amazonaws.com/123456789012/orders": "orders",
		"arn:aws:sqs:us-east-1:000000000000:orders-dlq.fifo":      "orders-dlq.fifo",
		"orders": "orders",
	} {
		if got := QueueName(in); got != want {
			t.Errorf("QueueName(%q) = %q; want %q", in, got, want)
		}
	}
}
