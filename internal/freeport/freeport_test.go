package freeport

import (
	"fmt"
	"net"
	"testing"
)

// Each port returned can be bound for TCP and UDP, and no port is
// returned twice.
func TestLoopback(t *testing.T) {
	for _, n := range []int{1, 4, 16} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ports, err := Loopback(n)
			if err != nil {
				t.Fatal(err)
			}
			if len(ports) != n {
				t.Fatalf("%d ports, want %d", len(ports), n)
			}
			seen := map[uint16]bool{}
			for _, p := range ports {
				if seen[p] {
					t.Errorf("port %d returned twice", p)
				}
				seen[p] = true
				addr := fmt.Sprintf("127.0.0.1:%d", p)
				l, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("TCP %s: %v", addr, err)
					continue
				}
				u, err := net.ListenPacket("udp", addr)
				if err != nil {
					t.Errorf("UDP %s: %v", addr, err)
				} else {
					u.Close()
				}
				l.Close()
			}
		})
	}
}
