package upstream

import (
	"errors"
	"log/slog"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// markControl sets SO_MARK on upstream sockets so the output-hook firewall
// can let egressd's own queries pass. Without CAP_NET_ADMIN the kernel
// refuses (EPERM); egressd warns once and carries on unmarked.
func markControl(mark uint32, log *slog.Logger) func(network, address string, c syscall.RawConn) error {
	var warn sync.Once
	return func(_, _ string, c syscall.RawConn) error {
		var sockErr error
		if err := c.Control(func(fd uintptr) {
			sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if errors.Is(sockErr, unix.EPERM) {
			warn.Do(func() {
				log.Warn("cannot mark upstream sockets; egressd's own queries may be filtered", "mark", mark, "err", sockErr)
			})
			return nil
		}
		return sockErr
	}
}
