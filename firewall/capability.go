package firewall

import (
	"errors"
	"fmt"
	"os"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoNetAdmin explains what to do when egressd may not touch nftables.
var ErrNoNetAdmin = errors.New(`firewall backend "nftables" needs CAP_NET_ADMIN (run as root or grant the capability), or set [firewall] backend = "none"`)

// CanAdminNetwork checks that this process may manage nftables by listing
// tables over netlink. It returns ErrNoNetAdmin when permission is missing.
func CanAdminNetwork() error {
	c, err := nftables.New()
	if err != nil {
		return wrapPermission(fmt.Errorf("firewall: netlink: %w", err))
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return wrapPermission(fmt.Errorf("firewall: list tables: %w", err))
	}
	return nil
}

// wrapPermission turns permission failures into ErrNoNetAdmin, keeping the
// cause for logs.
func wrapPermission(err error) error {
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %v", ErrNoNetAdmin, err)
	}
	return err
}

// socketBuffer is large enough for a reload that re-adds many thousands of
// elements in one batch.
const socketBuffer = 8 << 20

// bigBuffers raises the netlink socket buffers, forcing past the sysctl
// limits when privileged and falling back to the capped size otherwise.
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var forced error
	cerr := raw.Control(func(fd uintptr) {
		forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer)
		if forced == nil {
			forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer)
		}
	})
	if cerr != nil {
		return cerr
	}
	if forced != nil {
		_ = c.SetWriteBuffer(socketBuffer)
		_ = c.SetReadBuffer(socketBuffer)
	}
	return nil
}
