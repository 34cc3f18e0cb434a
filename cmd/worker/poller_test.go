package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// TestRunEndsByItself: --max-messages stops receiving after N, finishes
// them and exits 0; --idle-timeout exits 0 once the queue stays empty.
// Either way nothing is left in flight, and the last log line says what
// the run did.
func TestRunEndsByItself(t *testing.T) {
	tests := []struct {
		name       string
		send       int
		args       []string
		wantDone   int
		wantLeft   int
		wantReason string
	}{
		{name: "max messages", send: 50, args: []string{"--max-messages", "20"}, wantDone: 20, wantLeft: 30,
			wantReason: "the messages asked for were received and handled"},
		{name: "idle timeout", send: 30, args: []string{"--idle-timeout", "2s"}, wantDone: 30, wantLeft: 0,
			wantReason: "no message received within the idle timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := sendAll(t, "ends-"+strings.ReplaceAll(tt.name, " ", "-"), tt.send, sqstest.QueueOptions{VisibilityTimeout: 30})
			rec := newRecorder(t, nil)
			p := startWorker(t, append([]string{"--queue-url", q.URL, "--http-url", rec.srv.URL, "--wait-time", "1s"}, tt.args...)...)
			code, err := p.Wait(2 * time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if code != 0 {
				t.Errorf("exit status %d; want 0", code)
			}
			counts, total := rec.snapshot()
			if len(counts) != tt.wantDone || total != tt.wantDone {
				t.Errorf("handled %d distinct in %d calls; want %d each", len(counts), total, tt.wantDone)
			}
			d := depth(t, q.URL)
			if d.Visible != tt.wantLeft || d.InFlight != 0 {
				t.Errorf("queue after exit: visible %d, in flight %d; want %d, 0", d.Visible, d.InFlight, tt.wantLeft)
			}
			logs := p.Logs()
			if !strings.Contains(logs, tt.wantReason) {
				t.Errorf("the log does not say why it stopped (%q)", tt.wantReason)
			}
			last := p.LastLines(1)
			for _, field := range []string{`"sqs_requests":`, `"received":`, `"succeeded":`, `"failed":`, `"last_message_received_at":`} {
				if !strings.Contains(last, field) {
					t.Errorf("the last log line lacks %s: %s", field, last)
				}
			}
			t.Logf("figures: mode=%q sent=%d handled=%d left_visible=%d in_flight=%d", tt.name, tt.send, total, d.Visible, d.InFlight)
		})
	}
}
