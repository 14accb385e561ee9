//go:build !linux

package upstream

import (
	"log/slog"
	"syscall"
)

// markControl does nothing where SO_MARK does not exist.
func markControl(mark uint32, log *slog.Logger) func(network, address string, c syscall.RawConn) error {
	log.Warn("socket marks are only supported on Linux; ignoring mark", "mark", mark)
	return nil
}
