package wait

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	tests := []struct {
		name      string
		trueAfter int // calls before cond holds; -1: never
		limit     time.Duration
		want      bool
		minCalls  int
	}{
		{name: "at once", trueAfter: 0, limit: time.Hour, want: true, minCalls: 1},
		{name: "after a few checks", trueAfter: 3, limit: time.Hour, want: true, minCalls: 4},
		{name: "checked even with no time", trueAfter: 0, limit: 0, want: true, minCalls: 1},
		{name: "never", trueAfter: -1, limit: 5 * time.Millisecond, want: false, minCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			got := Until(tt.limit, time.Millisecond, func() bool {
				calls++
				return tt.trueAfter >= 0 && calls > tt.trueAfter
			})
			if got != tt.want {
				t.Errorf("Until = %t, want %t", got, tt.want)
			}
			if calls < tt.minCalls {
				t.Errorf("cond ran %d times, want at least %d", calls, tt.minCalls)
			}
			if tt.want && calls != tt.trueAfter+1 {
				t.Errorf("cond ran %d times after it held, want %d", calls, tt.trueAfter+1)
			}
		})
	}
}
