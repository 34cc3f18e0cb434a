package worker

import "testing"

func TestMaxReceiveCount(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		policy string
		want   int
	}{
		{"", 0},
		{`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":3}`, 3},
		{`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"5"}`, 5},
		{`{"maxReceiveCount":"x"}`, 0},
		{`not json`, 0},
		{`{"maxReceiveCount":-1}`, 0},
	} {
		if got := maxReceiveCount(tt.policy); got != tt.want {
			t.Errorf("maxReceiveCount(%q) = %d; want %d", tt.policy, got, tt.want)
		}
	}
}
