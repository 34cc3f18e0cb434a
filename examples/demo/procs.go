package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// startHandler starts the example handler on a free port and returns it
// with the URL it prints as its first line.
func startHandler(bin string) (*sqstest.Process, string, error) {
	h, err := sqstest.StartProcess(sqstest.ProcessOptions{
		Name: "handler", Path: bin, Args: []string{"--addr", "127.0.0.1:0"}, Stdout: true,
		Ready: func(string) bool { return true },
	})
	if err != nil {
		return nil, "", err
	}
	url, ok := strings.CutPrefix(h.ReadyLine, "listening ")
	if !ok {
		h.Kill()
		return nil, "", fmt.Errorf("handler printed %q, want `listening http://ADDR`", h.ReadyLine)
	}
	return h, url, nil
}

// passLog passes the worker's warnings, errors and anything that is not
// JSON (a crash) through to the demo's stderr; every line with all.
func passLog(all bool) func(line string) {
	return func(line string) {
		var e struct {
			Level string `json:"level"`
		}
		if all || json.Unmarshal([]byte(line), &e) != nil || (e.Level != "debug" && e.Level != "info") {
			fmt.Fprintln(os.Stderr, "worker | "+line)
		}
	}
}
