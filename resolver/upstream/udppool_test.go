package upstream

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

// idlePorts lists the source ports of the sockets idle in u's pool.
func idlePorts(u *plainUpstream) []int {
	u.sockets.mu.Lock()
	defer u.sockets.mu.Unlock()
	var ports []int
	for _, s := range u.sockets.idle {
		ports = append(ports, s.conn.LocalAddr().(*net.UDPAddr).Port)
	}
	return ports
}

func exchangeOnce(t *testing.T, u *plainUpstream, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := u.Exchange(ctx, new(dns.Msg).SetQuestion("pool.example.", dns.TypeA))
	return err
}

func TestUDPSocketsReusedThenRotated(t *testing.T) {
	u := newPlainUpstream(dnstest.StartEcho(t, false), 0, nil)
	defer u.closeIdle()
	var first []int
	for i := range udpSocketMaxUses - 1 {
		if err := exchangeOnce(t, u, time.Second); err != nil {
			t.Fatal(err)
		}
		ports := idlePorts(u)
		if len(ports) != 1 {
			t.Fatalf("exchange %d: %d idle sockets, want 1", i, len(ports))
		}
		if first == nil {
			first = ports
		}
		if ports[0] != first[0] {
			t.Fatalf("exchange %d used port %d, want the pooled %d", i, ports[0], first[0])
		}
	}
	if err := exchangeOnce(t, u, time.Second); err != nil {
		t.Fatal(err)
	}
	if ports := idlePorts(u); len(ports) != 0 {
		t.Fatalf("after %d uses the socket is still idle (%v); it must be retired", udpSocketMaxUses, ports)
	}
	if err := exchangeOnce(t, u, time.Second); err != nil {
		t.Fatal(err)
	}
	if ports := idlePorts(u); len(ports) != 1 || ports[0] == first[0] {
		t.Fatalf("after rotation idle ports %v, want one other than %d", ports, first[0])
	}
}

func TestUDPSocketNotReusedAfterTimeout(t *testing.T) {
	quiet, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	u := newPlainUpstream(quiet.LocalAddr().String(), 0, nil)
	defer u.closeIdle()
	if err := exchangeOnce(t, u, 50*time.Millisecond); err == nil {
		t.Fatal("exchange with a silent upstream succeeded")
	}
	if ports := idlePorts(u); len(ports) != 0 {
		t.Fatalf("socket of a timed-out exchange kept idle: %v", ports)
	}
}

func TestUDPSocketsAgeOut(t *testing.T) {
	tests := []struct {
		name   string
		age    time.Duration
		reused bool
	}{
		{"young", udpSocketMaxAge / 2, true},
		{"old", udpSocketMaxAge, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dials := 0
			p := newUDPSockets(func(context.Context) (net.Conn, error) {
				dials++
				return net.Dial("udp", "127.0.0.1:9")
			})
			defer p.closeIdle()
			start := time.Now()
			s, err := p.get(context.Background(), start)
			if err != nil {
				t.Fatal(err)
			}
			p.put(s, true, start)
			again, err := p.get(context.Background(), start.Add(tc.age))
			if err != nil {
				t.Fatal(err)
			}
			defer again.conn.Close()
			if got := again == s; got != tc.reused {
				t.Fatalf("socket reused = %v after %v, want %v (dials %d)", got, tc.age, tc.reused, dials)
			}
		})
	}
}

func TestUDPSocketsIdleBounded(t *testing.T) {
	p := newUDPSockets(func(context.Context) (net.Conn, error) { return net.Dial("udp", "127.0.0.1:9") })
	defer p.closeIdle()
	now := time.Now()
	var held []*udpSocket
	for range udpSocketsIdle + 5 {
		s, err := p.get(context.Background(), now)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
	}
	for _, s := range held {
		p.put(s, true, now)
	}
	if n := len(p.idle); n != udpSocketsIdle {
		t.Fatalf("%d idle sockets kept, want at most %d", n, udpSocketsIdle)
	}
}

func TestUDPSocketsSweepOldIdle(t *testing.T) {
	p := newUDPSockets(func(context.Context) (net.Conn, error) { return net.Dial("udp", "127.0.0.1:9") })
	defer p.closeIdle()
	start := time.Now()
	old, err := p.get(context.Background(), start)
	if err != nil {
		t.Fatal(err)
	}
	later := start.Add(udpSocketMaxAge)
	young, err := p.get(context.Background(), later)
	if err != nil {
		t.Fatal(err)
	}
	p.put(old, true, start)
	p.put(young, true, later)
	if len(p.idle) != 1 || p.idle[0] != young {
		t.Fatalf("idle after sweep: %d sockets, want only the young one", len(p.idle))
	}
	if _, err := old.conn.Write([]byte{0}); err == nil {
		t.Fatal("the old idle socket is still open")
	}
}
