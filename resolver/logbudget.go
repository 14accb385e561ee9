package resolver

import (
	"context"
	"log/slog"
	"time"

	"github.com/egressd/egressd/linerate"
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

// maxLogBudgets bounds the messages tracked; the resolver's messages are
// constant strings, far fewer.
const maxLogBudgets = 256

// budgetHandler passes a record on when its message's budget allows.
type budgetHandler struct {
	inner slog.Handler
	limit *linerate.Limiter
}

func newBudgetHandler(inner slog.Handler, now func() time.Time) slog.Handler {
	return &budgetHandler{inner: inner, limit: linerate.New(logLinesPerSecond, maxLogBudgets, now)}
}

func (h *budgetHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *budgetHandler) Handle(ctx context.Context, r slog.Record) error {
	ok, left := h.limit.Allow(r.Message)
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
	return &budgetHandler{inner: h.inner.WithAttrs(attrs), limit: h.limit}
}

func (h *budgetHandler) WithGroup(name string) slog.Handler {
	return &budgetHandler{inner: h.inner.WithGroup(name), limit: h.limit}
}
