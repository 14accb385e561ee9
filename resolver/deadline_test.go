package resolver

import (
	"testing"
	"time"
)

func TestSharedDeadline(t *testing.T) {
	var d sharedDeadline
	start := time.Now()
	tests := []struct {
		name     string
		at       time.Duration // after start
		sameAsV0 bool          // the first context handed out
	}{
		{"first", 0, true},
		{"within a step", deadlineStep / 2, true},
		{"after a step", deadlineStep, false},
		{"long after", 10 * firewallTimeout, false},
	}
	first := d.context(start)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := start.Add(tc.at)
			ctx := d.context(now)
			if got := ctx == first; got != tc.sameAsV0 {
				t.Fatalf("shared with the first context = %v, want %v", got, tc.sameAsV0)
			}
			deadline, ok := ctx.Deadline()
			if !ok {
				t.Fatal("no deadline")
			}
			left := deadline.Sub(now)
			if left > firewallTimeout || left <= firewallTimeout-deadlineStep {
				t.Fatalf("deadline %v from now, want within (%v, %v]", left, firewallTimeout-deadlineStep, firewallTimeout)
			}
		})
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.pending); n != 1 {
		t.Fatalf("%d contexts kept after all but one expired, want 1", n)
	}
}
