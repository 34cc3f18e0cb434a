package main

import "testing"

func TestGCPercentFor(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		name        string
		live, roots uint64
		want        int
	}{
		{name: "nothing yet: the most", want: maxGCPercent},
		{name: "tiny heap: capped", live: 100 << 10, roots: 100 << 10, want: maxGCPercent},
		{name: "small heap: goal at the floor", live: 3 * mib, roots: 9 * mib / 2, want: 200},
		{name: "rounded down to 25", live: 2 * mib, roots: 9 * mib / 2, want: 225},
		{name: "1,000 handlers' stacks, little heap: goal at the floor", live: 1 * mib, roots: 176 * mib / 10, want: 75},
		{name: "large stacks: loaded", live: 4 * mib, roots: 30 * mib, want: loadedGCPercent},
		{name: "large heap: loaded", live: 200 * mib, roots: 4 * mib, want: loadedGCPercent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := gcPercentFor(tt.live, tt.roots, 18*mib); got != tt.want {
				t.Errorf("gcPercentFor(live %d KiB, roots %d KiB) = %d, want %d", tt.live>>10, tt.roots>>10, got, tt.want)
			}
		})
	}
}
