package resolver

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/metrics"
)

// startEchoAuthority serves A queries on a loopback UDP port with one A
// record of TTL 0, built in place from the query, so nothing is ever
// cached and the upstream costs as little as possible: a miss benchmark
// then measures egressd, not its upstream. The address is 192.0.2.7, or
// with distinct a new one in 198.18.0.0/15 for every answer, so a firewall
// has something new to add each time.
func startEchoAuthority(tb testing.TB, distinct bool) string {
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
			if reply, ok := echoAnswer(buf[:size], addr); ok {
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

// echoAnswer turns a query in msg into its answer, in place: header and
// question kept, additional records dropped, one A record for addr with
// TTL 0 pointing back at the question name.
func echoAnswer(msg []byte, addr [4]byte) ([]byte, bool) {
	end, err := questionEnd(msg)
	if err != nil || binary.BigEndian.Uint16(msg[offQD:]) != 1 {
		return nil, false
	}
	flags := binary.BigEndian.Uint16(msg[offFlags:])
	binary.BigEndian.PutUint16(msg[offFlags:], flags|flagQR|flagRA)
	binary.BigEndian.PutUint16(msg[6:], 1)     // ANCOUNT
	binary.BigEndian.PutUint16(msg[8:], 0)     // NSCOUNT
	binary.BigEndian.PutUint16(msg[offAR:], 0) // ARCOUNT
	rr := []byte{
		0xC0, headerLen, // name: pointer to the question
		0, 1, 0, 1, // A, IN
		0, 0, 0, 0, // TTL 0
		0, 4, addr[0], addr[1], addr[2], addr[3],
	}
	return append(msg[:end], rr...), true
}

// BenchmarkCacheMiss is a query that always goes upstream over a real
// loopback UDP socket, with the firewall push to a backend that does
// nothing: the cost of the miss path without the client side of the
// network.
func BenchmarkCacheMiss(b *testing.B) {
	for _, bc := range []struct {
		name    string
		metrics bool
	}{{"bare", false}, {"metrics+querylog", true}} {
		b.Run(bc.name, func(b *testing.B) {
			o := Options{
				Upstreams: []string{startEchoAuthority(b, false)},
				CacheSize: 1000,
				Timeout:   2 * time.Second,
				Enforcer:  nopEnforcer{},
				QueryLog:  nopLog{},
			}
			if bc.metrics {
				o.Metrics = metrics.New()
			}
			env := newEnv(b, o)
			if !bc.metrics {
				env.srv.opts.QueryLog = nil
			}
			serveUncachedLoop(b, env, "miss.example.com.")
			if n := env.srv.cache.len(); n != 0 {
				b.Fatalf("%d answers cached; a TTL 0 answer must not be", n)
			}
		})
	}
}

// serveUncachedLoop answers an A query for qname through the handler b.N
// times, then checks the last answer was a single-record NOERROR.
func serveUncachedLoop(b *testing.B, env *testEnv, qname string) {
	b.Helper()
	req := question(qname, dns.TypeA)
	req.SetEdns0(1232, false)
	w := &fakeWriter{remote: udpClient("127.0.0.1")}
	b.ReportAllocs()
	for b.Loop() {
		env.srv.ServeDNS(w, req)
	}
	b.StopTimer()
	var resp dns.Msg
	if err := resp.Unpack(w.out); err != nil || len(resp.Answer) != 1 || resp.Rcode != dns.RcodeSuccess {
		b.Fatalf("last answer %v (%v)", resp, err)
	}
}
