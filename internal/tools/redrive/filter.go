package redrive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/itchyny/gojq"

	"github.com/sqsworker/sqsworker/internal/tools/line"
)

// Filter is a jq expression run on a message's line, the JSON object
// drain writes for it, so that a filter tried with jq on a drained file
// selects the same messages here.
type Filter struct {
	code *gojq.Code
}

// ParseFilter compiles a jq expression.
func ParseFilter(expr string) (*Filter, error) {
	q, err := gojq.Parse(expr)
	if err != nil {
		var pe *gojq.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s (at offset %d)", pe.Error(), pe.Offset)
		}
		return nil, err
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return nil, err
	}
	return &Filter{code: code}, nil
}

// Match runs the filter on l: it matches when its first output is
// neither false nor null (`select(…)` outputs nothing for a message it
// does not select: no match). An error of the expression on this line
// (`.body | fromjson` on a body that is not JSON) is returned.
func (f *Filter) Match(ctx context.Context, l *line.Line) (bool, error) {
	b, err := line.Marshal(l)
	if err != nil {
		return false, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return false, err
	}
	out, ok := f.code.RunWithContext(ctx, v).Next()
	if !ok {
		return false, nil
	}
	if err, ok := out.(error); ok {
		var halt *gojq.HaltError
		if errors.As(err, &halt) && halt.Value() == nil {
			return false, nil // `halt`: no output, no error
		}
		return false, err
	}
	return out != nil && out != false, nil
}
