package upstream

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func socketMark(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var sockErr error
	raw.Control(func(fd uintptr) { mark, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
	if sockErr != nil {
		t.Fatal(sockErr)
	}
	return mark
}

// With CAP_NET_ADMIN upstream sockets carry the mark; without it dialing
// still works and egressd warns once.
func TestUpstreamSocketMark(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	u := newPlainUpstream("127.0.0.1:53", 0x2a, log)

	var marks []int
	for range 2 {
		c, err := u.dialer.Dial("udp", u.addr)
		if err != nil {
			t.Fatalf("dial with mark: %v", err)
		}
		marks = append(marks, socketMark(t, c))
		c.Close()
	}
	if marks[0] == 0x2a && marks[1] == 0x2a {
		return
	}
	warnings := strings.Count(logged.String(), "cannot mark upstream sockets")
	if warnings != 1 {
		t.Errorf("socket unmarked (%v) and %d warnings logged, want 1", marks, warnings)
	}
	if os.Getenv("EGRESSD_REQUIRE_NETNS") == "1" {
		t.Fatalf("SO_MARK not applied (marks %v) although EGRESSD_REQUIRE_NETNS=1", marks)
	}
	t.Skip("no CAP_NET_ADMIN: marks are not applied, warning checked")
}

func TestMarkControlReportsOtherErrors(t *testing.T) {
	ctl := markControl(1, slog.New(slog.DiscardHandler))
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // a closed socket makes Control itself fail
	if err := ctl("udp", "127.0.0.1:53", raw); err == nil || errors.Is(err, unix.EPERM) {
		t.Errorf("control on a closed socket returned %v, want an error", err)
	}
}
