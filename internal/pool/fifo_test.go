package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sqsworker/sqsworker/internal/handler"
	"github.com/sqsworker/sqsworker/internal/message"
	"github.com/sqsworker/sqsworker/internal/testkit"
)

// groupMessage is message seq of group g.
func groupMessage(g, seq int) *message.Message {
	m := newMessage(fmt.Sprintf("g%d-%d", g, seq), 1)
	m.GroupID = fmt.Sprintf("g%d", g)
	return m
}

func TestPoolFIFOOrder(t *testing.T) {
	t.Parallel()
	const groups, perGroup = 5, 20
	var mu sync.Mutex
	seen := map[string][]string{}
	running := map[string]int{}
	overlap := false
	tp := newTestPool(Config{Concurrency: 4, FIFO: true}, handler.Func(func(_ context.Context, m *message.Message) error {
		mu.Lock()
		running[m.GroupID]++
		if running[m.GroupID] > 1 {
			overlap = true
		}
		seen[m.GroupID] = append(seen[m.GroupID], m.ID)
		mu.Unlock()
		mu.Lock()
		running[m.GroupID]--
		mu.Unlock()
		return nil
	}))
	in := make(chan *message.Message) // unbuffered: the pool sees them one by one
	done := tp.start(context.Background(), in)
	for seq := range perGroup {
		for g := range groups {
			in <- groupMessage(g, seq)
		}
	}
	close(in)
	wait(t, done, "Run")

	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Error("two messages of one group ran at once")
	}
	for g := range groups {
		var want []string
		for seq := range perGroup {
			want = append(want, groupMessage(g, seq).ID)
		}
		if got := seen[fmt.Sprintf("g%d", g)]; !slices.Equal(got, want) {
			t.Errorf("group g%d handled %v; want %v", g, got, want)
		}
	}
	if got := len(tp.acker.all()); got != groups*perGroup {
		t.Errorf("deletes = %d; want %d", got, groups*perGroup)
	}
}

func TestPoolFIFOFailureReleasesHeldGroup(t *testing.T) {
	t.Parallel()
	started := make(chan string, 10)
	proceed := map[string]chan error{"g0-0": make(chan error), "g1-0": make(chan error)}
	tp := newTestPool(Config{Concurrency: 2, FIFO: true}, handler.Func(func(_ context.Context, m *message.Message) error {
		started <- m.ID
		if c, ok := proceed[m.ID]; ok {
			return <-c
		}
		return nil
	}))
	in := make(chan *message.Message, 10)
	done := tp.start(context.Background(), in)

	a0, b0 := groupMessage(0, 0), groupMessage(1, 0)
	in <- a0
	in <- b0
	for range 2 {
		<-started
	}
	// g0's later messages queue behind a0 in the pool; a message of
	// another group after them shows the pool has read them.
	held := []*message.Message{groupMessage(0, 1), groupMessage(0, 2), groupMessage(0, 3)}
	for _, m := range held {
		in <- m
	}
	in <- groupMessage(1, 1)
	testkit.Eventually(t, 10*time.Second, "the pool to queue the held messages", func() bool { return len(in) == 0 })

	proceed["g0-0"] <- errors.New("boom")
	testkit.Eventually(t, 10*time.Second, "a0's group to be released", func() bool { return len(tp.leases.snapshot().released) == len(held) })
	proceed["g1-0"] <- nil
	close(in)
	wait(t, done, "Run")
	close(started)

	var ran []string
	for id := range started {
		ran = append(ran, id)
	}
	if want := []string{"g1-1"}; !slices.Equal(ran, want) {
		t.Errorf("after the first two, ran %v; want %v (g0's held messages must not run)", ran, want)
	}
	log := tp.leases.snapshot()
	if !slices.Equal(log.released, held) {
		t.Errorf("released %v; want g0's held messages in order", ids(log.released))
	}
	if len(log.retries) != 1 || log.retries[0].msg != a0 {
		t.Errorf("retries = %v; want a0 only", log.retries)
	}
}

// TestPoolFIFOFailureReleasesBufferedGroup covers the later messages of a
// failed group that this worker holds but the pool has not read yet: they
// sit in the channel while the pool waits for a slot.
func TestPoolFIFOFailureReleasesBufferedGroup(t *testing.T) {
	t.Parallel()
	started := make(chan string, 10)
	proceed := map[string]chan error{"g0-0": make(chan error), "g1-0": make(chan error)}
	tp := newTestPool(Config{Concurrency: 2, FIFO: true}, handler.Func(func(_ context.Context, m *message.Message) error {
		started <- m.ID
		if c, ok := proceed[m.ID]; ok {
			return <-c
		}
		return nil
	}))
	in := make(chan *message.Message, 10)
	done := tp.start(context.Background(), in)

	a0, b0 := groupMessage(0, 0), groupMessage(1, 0)
	in <- a0
	in <- b0
	for range 2 {
		<-started
	}
	// Both slots are busy: the pool reads c0 and waits for a slot with a1
	// still in the channel, received in the same batch as a0.
	c0, a1 := groupMessage(2, 0), groupMessage(0, 1)
	a1.ReceivedAt = a0.ReceivedAt
	in <- c0
	in <- a1
	testkit.Eventually(t, 10*time.Second, "the pool to read c0", func() bool { return len(in) == 1 })

	proceed["g0-0"] <- errors.New("boom")
	if id := <-started; id != c0.ID {
		t.Fatalf("started %s; want %s in the freed slot", id, c0.ID)
	}
	proceed["g1-0"] <- nil
	close(in)
	wait(t, done, "Run")
	close(started)

	for id := range started {
		if id == a1.ID {
			t.Errorf("%s ran after %s failed; want it released", a1.ID, a0.ID)
		}
	}
	if log := tp.leases.snapshot(); !slices.Contains(log.released, a1) {
		t.Errorf("released %v; want %s", ids(log.released), a1.ID)
	}
}

func ids(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}
