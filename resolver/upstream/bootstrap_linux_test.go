package upstream

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// Connections to DoT and DoH servers carry the mark like plain DNS ones.
func TestEndpointSocketMark(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var logged bytes.Buffer
	ep, err := newEndpoint("127.0.0.1", port, nil, 0x2a, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := ep.dial(ctx)
	if err != nil {
		t.Fatalf("dial with mark: %v", err)
	}
	defer c.Close()
	mark := socketMark(t, c)
	if mark == 0x2a {
		return
	}
	if !strings.Contains(logged.String(), "cannot mark upstream sockets") {
		t.Errorf("socket unmarked (%#x) and no warning logged", mark)
	}
	if os.Getenv("EGRESSD_REQUIRE_NETNS") == "1" {
		t.Fatalf("SO_MARK not applied (mark %#x) although EGRESSD_REQUIRE_NETNS=1", mark)
	}
	t.Skip("no CAP_NET_ADMIN: marks are not applied, warning checked")
}
