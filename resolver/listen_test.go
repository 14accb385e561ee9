package resolver

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
)

// A bind error is one line naming the address and transport once, and
// keeps the cause for errors.Is. It used to read
// "listen tcp A: listen tcp A: bind: address already in use".
func TestBindErrorOneLine(t *testing.T) {
	tcpTaken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpTaken.Close()
	udpTaken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udpTaken.Close()
	// A port free on TCP but taken on UDP.
	if l, err := net.Listen("tcp", udpTaken.LocalAddr().String()); err != nil {
		t.Skipf("port %s is taken on tcp too: %v", udpTaken.LocalAddr(), err)
	} else {
		l.Close()
	}

	tests := []struct {
		name, addr, network string
		cause               error
	}{
		{"tcp taken", tcpTaken.Addr().String(), "tcp", syscall.EADDRINUSE},
		{"udp taken", udpTaken.LocalAddr().String(), "udp", syscall.EADDRINUSE},
		{"not host:port", "127.0.0.1", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tcp, udp, err := bindPair(tt.addr)
			if err == nil {
				tcp.Close()
				udp.Close()
				t.Fatal("bind succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			if n := strings.Count(msg, tt.addr); n != 1 {
				t.Errorf("address named %d times in %q", n, msg)
			}
			if strings.Count(msg, "listen") != 1 || strings.Contains(msg, "\n") {
				t.Errorf("not one clear line: %q", msg)
			}
			if tt.network != "" && !strings.Contains(msg, tt.network) {
				t.Errorf("%q does not say %s", msg, tt.network)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("%q does not wrap %v", msg, tt.cause)
			}
		})
	}
}
