package deploy_test

import (
	"encoding/json"
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
