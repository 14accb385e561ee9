package dnstest

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/miekg/dns"
)

// StartEcho serves A queries on a loopback UDP port with one A record of
// TTL 0, built in place from the query, so nothing is ever cached and the
// upstream costs as little as possible: a miss benchmark then measures
// egressd, not its upstream. The address is 192.0.2.7, or with distinct a
// new one in 198.18.0.0/15 for every answer, so a firewall has something
// new to add each time. It returns the server's address.
func StartEcho(tb testing.TB, distinct bool) string {
	tb.Helper()
	return StartEchoTTL(tb, distinct, 0)
}

// StartEchoTTL is StartEcho with answers of the given TTL, so a resolver
// caches them: a benchmark of misses that fill the cache.
func StartEchoTTL(tb testing.TB, distinct bool, ttl uint32) string {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, dns.MaxMsgSize)
		addr := [4]byte{192, 0, 2, 7}
		for n := 0; ; n++ {
			if distinct {
				addr = [4]byte{198, 18 + byte(n>>16&1), byte(n >> 8), byte(n)}
			}
			size, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			if reply, ok := echoAnswer(buf[:size], addr, ttl); ok {
				conn.WriteToUDPAddrPort(reply, from)
			}
		}
	}()
	tb.Cleanup(func() {
		conn.Close()
		<-done
	})
	return conn.LocalAddr().String()
}

const headerLen = 12

// echoAnswer turns a query in msg into its answer, in place: header and
// question kept, additional records dropped, one A record for addr with
// ttl pointing back at the question name.
func echoAnswer(msg []byte, addr [4]byte, ttl uint32) ([]byte, bool) {
	if len(msg) < headerLen || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return nil, false
	}
	end := headerLen
	for { // the question name: labels without compression
		if end >= len(msg) || msg[end]&0xC0 != 0 {
			return nil, false
		}
		l := int(msg[end])
		end += 1 + l
		if l == 0 {
			break
		}
	}
	end += 4 // type, class
	if end > len(msg) {
		return nil, false
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	binary.BigEndian.PutUint16(msg[2:], flags|1<<15|1<<7) // QR, RA
	binary.BigEndian.PutUint16(msg[6:], 1)                // ANCOUNT
	binary.BigEndian.PutUint16(msg[8:], 0)                // NSCOUNT
	binary.BigEndian.PutUint16(msg[10:], 0)               // ARCOUNT
	rr := []byte{
		0xC0, headerLen, // name: pointer to the question
		0, 1, 0, 1, // A, IN
		byte(ttl >> 24), byte(ttl >> 16), byte(ttl >> 8), byte(ttl),
		0, 4, addr[0], addr[1], addr[2], addr[3],
	}
	return append(msg[:end], rr...), true
}
