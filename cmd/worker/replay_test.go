package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/sqsworker/sqsworker/internal/sqstest"
)

// TestReplayStopsAtTheFirstFailureThenEmptiesTheQueue: replay through a
// broken handler stops at its first failure with status 1, naming the
// message and the error, which is still in the queue; replay through the
// fixed handler then empties the queue with status 0.
func TestReplayStopsAtTheFirstFailureThenEmptiesTheQueue(t *testing.T) {
	t.Parallel()
	const n = 30
	dlq, sent := sendAll(t, "replay-cli", n, sqstest.QueueOptions{})
	const bad = "replay-cli-00011"
	broken := newRecorder(t, func(body string, _ int) int {
		if body == bad {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	_, stderr, code := tool(t, "", "replay", "--queue", dlq.Name, "--http-url", broken.srv.URL, "--wait-time", "1s")
	m := regexp.MustCompile(`^replaying ` + regexp.QuoteMeta(dlq.URL) + ` through the handler \(each message is deleted once the handler succeeded\)\n` +
		`worker: replay stopped at the first failure: message (\S+): (.*); it is back in ` +
		regexp.QuoteMeta(dlq.Name) + `, visible, not deleted; (\d+) messages? of ` + regexp.QuoteMeta(dlq.Name) + ` handled and deleted before it\n$`).
		FindStringSubmatch(stderr)
	if code != 1 || m == nil || !strings.Contains(m[2], "422") {
		t.Fatalf("replay through a broken handler: exit %d, stderr %q; want status 1 and one line naming the message and the 422", code, stderr)
	}
	handled, _ := broken.snapshot()
	var deleted int
	_, _ = fmt.Sscan(m[3], &deleted)
	if d := depth(t, dlq.URL); d.Visible != n-deleted || d.InFlight != 0 || deleted != len(handled)-1 {
		t.Errorf("after the failure the queue holds %+v, %d handled, %d deleted; want the failed one and the unhandled visible", d, len(handled), deleted)
	}
	fixed := newRecorder(t, nil)
	_, stderr, code = tool(t, "", "replay", "--queue", dlq.Name, "--http-url", fixed.srv.URL, "--wait-time", "1s", "--concurrency", "4")
	if want := fmt.Sprintf("replaying %s through the handler (each message is deleted once the handler succeeded)\n"+
		"replay: %s of %s handled and deleted; %s is empty\n", dlq.URL, plural(n-deleted, "message"), dlq.Name, dlq.Name); code != 0 || stderr != want {
		t.Fatalf("replay through the fixed handler: exit %d, stderr %q; want %q", code, stderr, want)
	}
	got, _ := fixed.snapshot()
	if got[bad] != 1 {
		t.Errorf("the fixed handler saw the failed message %d times, want once", got[bad])
	}
	for b, c := range handled {
		if b != bad {
			got[b] += c
		}
	}
	if lost, _ := countLostAndDuplicates(sent, got); lost != 0 {
		t.Errorf("%d messages were never handled", lost)
	}
	if d := depth(t, dlq.URL); d != (sqstest.Depth{}) {
		t.Errorf("after the fixed replay the queue holds %+v", d)
	}
}
