package firewall

import (
	"context"
	"log/slog"
)

// None is the "none" backend: it enforces nothing. Use it where egressd
// only filters DNS, or lacks the privilege to manage nftables.
type None struct{}

// NewNone returns the no-op backend and logs, once, that destinations are
// not enforced.
func NewNone(logger *slog.Logger) *None {
	if logger == nil {
		logger = slog.Default()
	}
	logger.Warn(`firewall backend "none": resolved destinations are not enforced; clients can reach any address they know`)
	return &None{}
}

// Allow does nothing.
func (*None) Allow(context.Context, Allowance) error { return nil }

// Close does nothing.
func (*None) Close() error { return nil }

var (
	_ Enforcer = (*None)(nil)
	_ Enforcer = (*NFT)(nil)
)
