package main

import (
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/sqstest"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// stamps records when each handler call of one replica ended.
type stamps struct {
	mu sync.Mutex
	at []time.Time
}

func (s *stamps) add(t time.Time) {
	s.mu.Lock()
	s.at = append(s.at, t)
	s.mu.Unlock()
}

func (s *stamps) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

// TestThreeReplicasScale runs one replica alone on a 20,000-message queue,
// then adds two more: nothing is lost or handled twice, and every replica
// takes a share. The rates of one and of three are logged, not judged: a
// timed figure moves with the machine's load, and speed is the bench's.
// The handler takes 20ms and each replica runs 8 at once, so a replica's
// rate is set by its handlers, not by the machine's cores; the replicas
// are built without -race for the same reason.
func TestThreeReplicasScale(t *testing.T) {
	const n, handlerTime, concurrency = 20000, 20 * time.Millisecond, "8"
	q, sent := sendAll(t, "replicas", n, sqstest.QueueOptions{VisibilityTimeout: 30})
	var counts [3]*recorder
	var times [3]stamps
	var workers [3]proc
	for i := range counts {
		counts[i] = newRecorder(t, func(string, int) int {
			working(handlerTime)("", 0)
			times[i].add(time.Now())
			return http.StatusOK
		})
	}
	startReplica := func(i int) {
		workers[i] = startBinary(t, plainWorkerBin(t), "--queue-url", q.URL, "--http-url", counts[i].srv.URL,
			"--concurrency", concurrency, "--wait-time", "1s")
	}
	total := func() int { return times[0].count() + times[1].count() + times[2].count() }

	// One replica: its rate between its 200th and 2,000th message.
	startReplica(0)
	testkit.Eventually(t, time.Minute, "200 handled by one replica", func() bool { return times[0].count() >= 200 })
	soloFrom, soloStart := times[0].count(), time.Now()
	testkit.Eventually(t, time.Minute, "2,000 handled by one replica", func() bool { return times[0].count() >= 2000 })
	solo := float64(times[0].count()-soloFrom) / time.Since(soloStart).Seconds()

	// Three replicas: their summed rate once all three are handling,
	// until 90% of the queue is done (the tail drains unevenly).
	startReplica(1)
	startReplica(2)
	testkit.Eventually(t, time.Minute, "the new replicas handling", func() bool { return times[1].count() >= 100 && times[2].count() >= 100 })
	trioFrom, trioStart := total(), time.Now()
	testkit.Eventually(t, 3*time.Minute, "90% handled", func() bool { return total() >= n*9/10 })
	trio := float64(total()-trioFrom) / time.Since(trioStart).Seconds()

	testkit.Eventually(t, 2*time.Minute, "every message handled", func() bool {
		seen := 0
		for _, r := range counts {
			c, _ := r.snapshot()
			seen += len(c)
		}
		return seen >= n
	})
	testkit.Eventually(t, time.Minute, "the queue empty", func() bool { d := depth(t, q.URL); return d.Visible+d.InFlight == 0 })
	var rpm float64
	for i, w := range workers {
		rpm += requestsPerMessage(w.scrape()) / 3
		if code := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("replica %d: exit status %d", i, code)
		}
	}
	all := map[string]int{}
	for _, r := range counts {
		c, _ := r.snapshot()
		for b, k := range c {
			all[b] += k
		}
	}
	lost, dup := countLostAndDuplicates(sent, all)
	t.Logf("figures: messages=%d lost=%d duplicates=%d handled_by=[%d %d %d] one_replica=%.0f msg/s three_replicas=%.0f msg/s ratio=%.2f sqs_requests_per_message=%.3f",
		n, lost, dup, times[0].count(), times[1].count(), times[2].count(), solo, trio, trio/solo, rpm)
	if lost != 0 || dup != 0 {
		t.Errorf("lost %d, duplicates %d: want 0 and 0", lost, dup)
	}
	for i := range times {
		if c := times[i].count(); c < n/20 {
			t.Errorf("replica %d handled %d of %d messages: the queue did not spread over the replicas", i, c, n)
		}
	}
}
