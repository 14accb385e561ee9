package fakeclock

import (
	"testing"
	"time"
)

func TestClockMovesOnlyWhenAdvanced(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(start)
	steps := []struct {
		advance time.Duration
		want    time.Time
	}{
		{0, start},
		{time.Second, start.Add(time.Second)},
		{time.Hour, start.Add(time.Hour + time.Second)},
		{-time.Hour, start.Add(time.Second)},
	}
	for i, st := range steps {
		c.Advance(st.advance)
		if got := c.Now(); !got.Equal(st.want) {
			t.Fatalf("step %d: Now() = %v, want %v", i, got, st.want)
		}
	}
}
