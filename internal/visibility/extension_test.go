package visibility

import (
	"testing"
	"time"
)

func TestTick(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		visibility time.Duration
		want       time.Duration
	}{
		{name: "a third of the visibility timeout", visibility: 30 * time.Second, want: 10 * time.Second},
		{name: "short", visibility: 3 * time.Second, want: time.Second},
		{name: "capped at ten seconds", visibility: 10 * time.Minute, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newTestTable(t, Config{VisibilityTimeout: tt.visibility}, &fakeAPI{})
			if got := m.Tick(); got != tt.want {
				t.Errorf("Tick() = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestExtension(t *testing.T) {
	t.Parallel()
	type obs struct {
		n int
		d time.Duration
	}
	tests := []struct {
		name string
		obs  []obs
		want time.Duration
	}{
		{name: "no observations", want: 30 * time.Second},
		{name: "fast handlers", obs: []obs{{100, 2 * time.Second}}, want: 30 * time.Second},
		{name: "slow handlers", obs: []obs{{100, 45 * time.Second}}, want: 46 * time.Second},
		{name: "one slow in a hundred is below p99", obs: []obs{{99, time.Second}, {1, 100 * time.Second}}, want: 30 * time.Second},
		{name: "two slow in a hundred set p99", obs: []obs{{98, time.Second}, {2, 100 * time.Second}}, want: 101 * time.Second},
		{name: "capped at max extension", obs: []obs{{10, 2 * time.Hour}}, want: 10 * time.Minute},
		{name: "negative durations count as zero", obs: []obs{{10, -time.Second}}, want: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newTestTable(t, Config{MaxExtension: 10 * time.Minute}, &fakeAPI{})
			for _, o := range tt.obs {
				for range o.n {
					m.ObserveDuration(o.d)
				}
			}
			if got := m.Extension(); got != tt.want {
				t.Errorf("Extension() = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestExtensionFollowsObservations(t *testing.T) {
	t.Parallel()
	m := newTestTable(t, Config{MaxExtension: 10 * time.Minute}, &fakeAPI{})
	for range 100 {
		m.ObserveDuration(50 * time.Second)
	}
	if got := m.Extension(); got != 51*time.Second {
		t.Fatalf("Extension() = %v; want 51s", got)
	}
	for range 10000 {
		m.ObserveDuration(70 * time.Second)
	}
	if got := m.Extension(); got != 71*time.Second {
		t.Errorf("Extension() after slower handlers = %v; want 71s", got)
	}

	// The heartbeat asks for it.
	msg := received("m", 1, t0.Add(-15*time.Second))[0]
	m.Add(msg)
	m.Heartbeat(t.Context())
	reqs := m.api.requests()
	if len(reqs) != 1 || reqs[0][0].VisibilityTimeout != 71 {
		t.Errorf("requests = %v; want one extension of 71s", reqs)
	}
}
