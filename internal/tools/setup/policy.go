package setup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// policy is a queue's access policy. Statements are kept as they are;
// only what finding a topic's grant needs is read from them.
type policy struct {
	Version   string            `json:"Version"`
	ID        string            `json:"Id,omitempty"`
	Statement []json.RawMessage `json:"Statement"`
}

// statement is the part of a policy statement a topic's grant is
// recognised by.
type statement struct {
	Effect    string                          `json:"Effect"`
	Action    oneOrMany                       `json:"Action"`
	Condition map[string]map[string]oneOrMany `json:"Condition"`
}

// oneOrMany is a policy value that is a string or a list of strings.
type oneOrMany []string

func (o *oneOrMany) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*o = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*o = many
	return nil
}

func parsePolicy(doc string) (*policy, error) {
	p := &policy{Version: "2012-10-17"}
	if strings.TrimSpace(doc) == "" {
		return p, nil
	}
	var raw struct {
		Version   string          `json:"Version"`
		ID        string          `json:"Id"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal([]byte(doc), &raw); err != nil {
		return nil, err
	}
	if raw.Version != "" {
		p.Version = raw.Version
	}
	p.ID = raw.ID
	switch s := strings.TrimSpace(string(raw.Statement)); {
	case s == "" || s == "null":
	case strings.HasPrefix(s, "{"): // one statement, not in a list
		p.Statement = []json.RawMessage{raw.Statement}
	default:
		if err := json.Unmarshal(raw.Statement, &p.Statement); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// allows reports whether a statement already lets topic send to the
// queue: it allows sqs:SendMessage on the condition that the source is
// the topic.
func (p *policy) allows(topic string) bool {
	for _, raw := range p.Statement {
		var st statement
		if json.Unmarshal(raw, &st) != nil || st.Effect != "Allow" {
			continue
		}
		if !slices.ContainsFunc(st.Action, func(a string) bool {
			return strings.EqualFold(a, "sqs:SendMessage") || a == "sqs:*" || a == "*"
		}) {
			continue
		}
		for op, kv := range st.Condition {
			if op != "ArnEquals" && op != "ArnLike" && op != "StringEquals" {
				continue
			}
			for k, v := range kv {
				if strings.EqualFold(k, "aws:SourceArn") && slices.Contains(v, topic) {
					return true
				}
			}
		}
	}
	return false
}

// allow adds the statement that lets topic send to the queue.
func (p *policy) allow(queueARN, topic string) {
	sum := sha256.Sum256([]byte(topic))
	st := map[string]any{
		"Sid":       "AllowTopic" + hex.EncodeToString(sum[:8]),
		"Effect":    "Allow",
		"Principal": map[string]string{"Service": "sns.amazonaws.com"},
		"Action":    "sqs:SendMessage",
		"Resource":  queueARN,
		"Condition": map[string]map[string]string{"ArnEquals": {"aws:SourceArn": topic}},
	}
	b, err := json.Marshal(st)
	if err != nil {
		panic(fmt.Sprintf("marshal a policy statement: %v", err)) // maps of strings always marshal
	}
	p.Statement = append(p.Statement, b)
}

func (p *policy) marshal() (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("write the queue policy: %w", err)
	}
	return string(b), nil
}
