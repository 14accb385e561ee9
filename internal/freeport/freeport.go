// Package freeport finds loopback ports for servers a test or test tool
// starts as separate processes (a daemon needs its port before it runs).
package freeport

import (
	"fmt"
	"net"
)

// Loopback returns n distinct ports of 127.0.0.1 that were free for both
// TCP and UDP at the time of the call. They are released at once, so
// another program may take one before the caller does; that is unlikely,
// not impossible.
func Loopback(n int) ([]uint16, error) {
	var ports []uint16
	seen := map[uint16]bool{}
	for tries := 0; len(ports) < n && tries < 20+2*n; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := uint16(l.Addr().(*net.TCPAddr).Port)
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		if !seen[port] {
			seen[port] = true
			ports = append(ports, port)
		}
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found only %d of %d free loopback ports", len(ports), n)
	}
	return ports, nil
}
