package deploy_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// iamPolicy is an IAM policy document.
type iamPolicy struct {
	Version   string `json:"Version"`
	Statement []struct {
		Sid      string          `json:"Sid"`
		Effect   string          `json:"Effect"`
		Action   json.RawMessage `json:"Action"`
		Resource json.RawMessage `json:"Resource"`
	} `json:"Statement"`
}

// stringOrList reads IAM's "x" or ["x", "y"].
func stringOrList(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("%s: neither a string nor a list of strings", raw)
	}
	return list
}

// policyActions is what a policy allows, by action, after checking that
// it names no wildcard action.
func policyActions(t *testing.T, path string) map[string]bool {
	t.Helper()
	var p iamPolicy
	dec := json.NewDecoder(strings.NewReader(string(readFile(t, path))))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if p.Version != "2012-10-17" {
		t.Errorf("%s: Version %q, want 2012-10-17", path, p.Version)
	}
	out := map[string]bool{}
	for _, s := range p.Statement {
		if s.Effect != "Allow" {
			continue
		}
		for _, a := range stringOrList(t, s.Action) {
			if strings.Contains(a, "*") {
				t.Errorf("%s: statement %s allows %s: name each action", path, s.Sid, a)
			}
			out[a] = true
		}
	}
	return out
}

// TestIAMPolicies: the worker's policy allows only what consuming needs,
// on named queues, and sending only to the dead-letter queue (where it
// moves a message its handler says can never succeed); the tools' policy
// adds what they do (create, send).
func TestIAMPolicies(t *testing.T) {
	t.Parallel()
	worker := policyActions(t, "deploy/kubernetes/iam/worker-policy.json")
	tools := policyActions(t, "deploy/kubernetes/iam/tools-policy.json")
	for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"} {
		if !worker[a] {
			t.Errorf("the worker's policy lacks %s", a)
		}
	}
	for _, a := range []string{"sqs:CreateQueue", "sqs:SetQueueAttributes", "sqs:DeleteQueue", "sqs:PurgeQueue"} {
		if worker[a] {
			t.Errorf("the worker's policy allows %s, which consuming does not need", a)
		}
	}
	for _, a := range []string{"sqs:SendMessage", "sqs:CreateQueue", "sqs:SetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage"} {
		if !tools[a] {
			t.Errorf("the tools' policy lacks %s", a)
		}
	}
	var p iamPolicy
	if err := json.Unmarshal(readFile(t, "deploy/kubernetes/iam/worker-policy.json"), &p); err != nil {
		t.Fatal(err)
	}
	dlq := regexp.MustCompile(`-dlq(\.fifo)?$`)
	sendsToDLQ := false
	for _, s := range p.Statement {
		sends := slices.Contains(stringOrList(t, s.Action), "sqs:SendMessage")
		for _, r := range stringOrList(t, s.Resource) {
			if strings.Contains(r, "*") {
				t.Errorf("the worker's policy statement %s applies to %s: name the queues", s.Sid, r)
			}
			if sends && !dlq.MatchString(r) {
				t.Errorf("the worker's policy statement %s lets it send to %s: the worker sends only to the dead-letter queue", s.Sid, r)
			}
			sendsToDLQ = sendsToDLQ || sends && dlq.MatchString(r)
		}
	}
	if !sendsToDLQ {
		t.Error("the worker's policy does not let it send to the dead-letter queue, where it moves a message its handler says can never succeed")
	}
}
