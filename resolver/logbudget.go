package resolver

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logLinesPerSecond bounds how often one message of the resolver's log is
// written. Many lines are caused by queries (an upstream failing, an
// answer denied, a client over its rate limit), and queries come as fast
// as clients send them, from forged sources too: without a bound a flood
// of queries is a flood of log lines filling the disk. Each message may
// write this many lines a second, as many in a burst; lines past that are
// counted, and the next line of the message says how many were left out
// (lines_left_out).
const logLinesPerSecond = 10

// maxLogBudgets bounds the messages with a budget of their own; the
// resolver's messages are constant strings, far fewer. Any beyond share
// one budget.
const maxLogBudgets = 256

// budgetHandler passes a record on when its message's budget allows.
type budgetHandler struct {
	inner   slog.Handler
	budgets *logBudgets
}

type logBudgets struct {
	now    func() time.Time
	mu     sync.Mutex
	byMsg  map[string]*lineBudget
	shared lineBudget
}

func newBudgetHandler(inner slog.Handler, now func() time.Time) slog.Handler {
	return &budgetHandler{inner: inner, budgets: &logBudgets{now: now, byMsg: map[string]*lineBudget{}}}
}

func (h *budgetHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *budgetHandler) Handle(ctx context.Context, r slog.Record) error {
	ok, left := h.budgets.take(r.Message)
	if !ok {
		return nil
	}
	if left > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Uint64("lines_left_out", left))
	}
	return h.inner.Handle(ctx, r)
}

func (h *budgetHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &budgetHandler{inner: h.inner.WithAttrs(attrs), budgets: h.budgets}
}

func (h *budgetHandler) WithGroup(name string) slog.Handler {
	return &budgetHandler{inner: h.inner.WithGroup(name), budgets: h.budgets}
}

// take spends a line of msg's budget; when it may be written, it also
// returns how many lines of msg were left out since the last one written.
func (b *logBudgets) take(msg string) (ok bool, left uint64) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	lb := b.byMsg[msg]
	if lb == nil {
		lb = &b.shared
		if len(b.byMsg) < maxLogBudgets {
			lb = &lineBudget{}
			b.byMsg[msg] = lb
		}
	}
	return lb.take(now)
}

// lineBudget is a token bucket of lines.
type lineBudget struct {
	tokens float64
	last   time.Time
	left   uint64
}

func (lb *lineBudget) take(now time.Time) (ok bool, left uint64) {
	if lb.last.IsZero() {
		lb.tokens = logLinesPerSecond
	} else if d := now.Sub(lb.last); d > 0 {
		lb.tokens = min(logLinesPerSecond, lb.tokens+d.Seconds()*logLinesPerSecond)
	}
	lb.last = now
	if lb.tokens < 1 {
		lb.left++
		return false, 0
	}
	lb.tokens--
	left, lb.left = lb.left, 0
	return true, left
}
