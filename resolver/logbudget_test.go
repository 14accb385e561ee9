package resolver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Each message has its own budget of logLinesPerSecond lines a second; a
// line written after some were left out says how many; loggers derived
// with With share their parent's budgets.
func TestLogBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	var out bytes.Buffer
	log := slog.New(newBudgetHandler(slog.NewTextHandler(&out, nil), func() time.Time { return now }))
	count := func(msg string) (n int, lastLine string) {
		for _, l := range strings.Split(out.String(), "\n") {
			for _, f := range strings.Fields(l) {
				if f == "msg="+msg {
					n, lastLine = n+1, l
				}
			}
		}
		return n, lastLine
	}
	steps := []struct {
		name    string
		advance time.Duration
		log     func()
		msg     string
		lines   int
		leftOut string // lines_left_out= on the message's last line, "" for none
	}{
		{"a burst is cut at the budget", 0, func() {
			for range 3 * logLinesPerSecond {
				log.Warn("upstream-failed", "i", 1)
			}
		}, "upstream-failed", logLinesPerSecond, ""},
		{"another message has its own budget", 0, func() { log.Info("answer-denied") }, "answer-denied", 1, ""},
		{"a logger from With shares the budget", 0, func() { log.With("k", "v").Warn("upstream-failed") }, "upstream-failed", logLinesPerSecond, ""},
		{"refilled: the next line counts what was left out", time.Second / logLinesPerSecond, func() { log.Warn("upstream-failed") }, "upstream-failed", logLinesPerSecond + 1, "lines_left_out=21"},
		{"and the count starts again", time.Second / logLinesPerSecond, func() { log.Warn("upstream-failed") }, "upstream-failed", logLinesPerSecond + 2, ""},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		st.log()
		n, last := count(st.msg)
		if n != st.lines {
			t.Fatalf("%s: %d lines of %s, want %d", st.name, n, st.msg, st.lines)
		}
		if got := strings.Contains(last, "lines_left_out="); got != (st.leftOut != "") || (st.leftOut != "" && !strings.Contains(last, st.leftOut)) {
			t.Errorf("%s: last line %q, want lines_left_out %q", st.name, last, st.leftOut)
		}
	}

}
