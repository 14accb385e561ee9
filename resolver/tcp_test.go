package resolver

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dialFrom opens a DNS-over-TCP connection to addr from source.
func dialFrom(t *testing.T, source, addr string) *dns.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &dns.Conn{Conn: c}
}

// askOn sends one query on conn and reports whether it was answered.
func askOn(conn *dns.Conn, id uint16) bool {
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	q := question("a.example.", dns.TypeA)
	q.Id = id
	if err := conn.WriteMsg(q); err != nil {
		return false
	}
	resp, err := conn.ReadMsg()
	return err == nil && resp.Id == id && resp.Rcode == dns.RcodeSuccess
}

// RFC 7766 section 6.2.1: a client may send several queries without
// waiting; every one must be answered (miekg/dns answers them in order).
func TestTCPPipelinedQueries(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 10})
	addr := env.start(t)
	conn := dialFrom(t, "127.0.0.1", addr)

	const n = 10
	var stream []byte
	for i := range n {
		q := question("a.example.", dns.TypeA)
		q.Id = uint16(100 + i)
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, byte(len(b)>>8), byte(len(b)))
		stream = append(stream, b...)
	}
	if _, err := conn.Conn.Write(stream); err != nil { // raw: all queries in one segment
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	seen := map[uint16]bool{}
	for range n {
		resp, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("after %d answers: %v", len(seen), err)
		}
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Errorf("answer %d: %v", resp.Id, resp)
		}
		seen[resp.Id] = true
	}
	for i := range n {
		if !seen[uint16(100+i)] {
			t.Errorf("query %d not answered", 100+i)
		}
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, TCPIdleTimeout: 150 * time.Millisecond})
	addr := env.start(t)
	conn := dialFrom(t, "127.0.0.1", addr)
	if !askOn(conn, 1) {
		t.Fatal("first query not answered")
	}
	start := time.Now()
	conn.SetReadDeadline(start.Add(2 * time.Second))
	_, err := conn.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read on the idle connection: %v, want EOF", err)
	}
	if idle := time.Since(start); idle < 100*time.Millisecond || idle > time.Second {
		t.Errorf("closed after %v idle, want about 150ms", idle)
	}
}

// Connections beyond the total or the per-client limit are closed at once;
// a closed connection frees its slot.
func TestTCPConnectionLimits(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, TCPMaxConns: 4, TCPMaxConnsPerClient: 2, TCPIdleTimeout: 10 * time.Second})
	addr := env.start(t)

	steps := []struct {
		source string
		want   bool
	}{
		{"127.0.0.2", true},
		{"127.0.0.2", true},
		{"127.0.0.2", false}, // third from one client
		{"127.0.0.3", true},
		{"127.0.0.3", true},
		{"127.0.0.4", false}, // fifth in total
	}
	var first *dns.Conn
	for i, st := range steps {
		conn := dialFrom(t, st.source, addr)
		if i == 0 {
			first = conn
		}
		if got := askOn(conn, uint16(i)); got != st.want {
			t.Fatalf("connection %d from %s: answered=%v, want %v", i, st.source, got, st.want)
		}
	}
	first.Close()
	waitFor(t, func() bool { return askOn(dialFrom(t, "127.0.0.4", addr), 100) })

	// UDP is not affected by TCP limits.
	stillServes(t, "udp", addr)
}

func TestConnLimiterCountsOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	member := func(netip.Addr) bool { return true }
	l := newConnLimiter(ln, tcpLimits{max: 2, perClient: 2, outsiders: 2, perOutsider: 2}, member, slog.New(slog.DiscardHandler))
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-accepted
	if n := l.open(); n != 1 {
		t.Fatalf("%d open, want 1", n)
	}
	c.Close()
	c.Close()
	if n := l.open(); n != 0 {
		t.Fatalf("%d open after closing twice, want 0", n)
	}
	client.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := client.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("server side not closed")
	}
}

// Outsiders (addresses outside Clients) never take the slots members
// count on: with room for four member connections, a member's query is
// answered while 1,200 outsider connections from 300 /24 prefixes are
// attempted and held open, and again once they all are.
func TestTCPOutsidersTakeNoMemberSlots(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{
		Upstreams:            []string{up.addr},
		TCPMaxConns:          4,
		TCPMaxConnsPerClient: 2,
		TCPIdleTimeout:       time.Minute, // nothing is closed for idleness during the test
		Settings: Settings{
			Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		},
	})
	addr := env.start(t)

	const outsiders = 1200
	dialed := make(chan error, 1)
	go func() {
		for i := range outsiders {
			src := fmt.Sprintf("127.%d.%d.%d", 1+i/1024, i/4%256, 1+i%4) // 4 per /24
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				dialed <- fmt.Errorf("outsider %d from %s: %w", i, src, err)
				return
			}
			t.Cleanup(func() { c.Close() })
		}
		dialed <- nil
	}()
	l := env.srv.tcpLimiter(t)
	// While they arrive: every member query is answered.
	done := false
	for q := 0; !done; q++ {
		select {
		case err := <-dialed:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
		conn := dialFrom(t, "127.0.0.1", addr)
		if !askOn(conn, uint16(q)) {
			t.Fatalf("member query %d during the outsider flood not answered", q)
		}
		conn.Close()
		waitFor(t, func() bool { return l.open() == 0 }) // the server has seen the close
	}
	// With all of them attempted and held open by the outsiders: members
	// still get every slot of their own.
	var members []*dns.Conn
	for i := range 2 {
		conn := dialFrom(t, "127.0.0.1", addr)
		if !askOn(conn, uint16(1000+i)) {
			t.Fatalf("member connection %d after the flood not answered", i)
		}
		members = append(members, conn)
	}
	if got := l.outsidersOpen(); got > outsiderTCPMaxConns {
		t.Errorf("%d outsider connections held, limit %d", got, outsiderTCPMaxConns)
	}
	if got := l.open(); got != len(members) {
		t.Errorf("%d member connections counted, want %d", got, len(members))
	}
	// What the metrics read: the server's totals over its listeners.
	if clients, outsiders := env.srv.TCPConnections(); clients != len(members) || outsiders != l.outsidersOpen() {
		t.Errorf("TCPConnections() = %d, %d; want %d, %d", clients, outsiders, len(members), l.outsidersOpen())
	}
	if clients, outsiders := env.srv.TCPRejected(); clients != 0 || outsiders == 0 {
		t.Errorf("TCPRejected() = %d clients, %d outsiders; want none and some", clients, outsiders)
	}
}

// tcpLimiter returns the connection limiter of the server's only TCP
// listener.
func (s *Server) tcpLimiter(t *testing.T) *connLimiter {
	t.Helper()
	ls := s.tcpLimiters()
	if len(ls) != 1 {
		t.Fatalf("%d TCP listeners, want 1", len(ls))
	}
	return ls[0]
}

// An outsider gets REFUSED for its first query and the connection ends;
// it never waits out a member's idle timeout.
func TestTCPOutsiderOneQueryPerConnection(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{
		Upstreams:      []string{up.addr},
		TCPIdleTimeout: time.Minute,
		Settings: Settings{
			Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		},
	})
	addr := env.start(t)
	conn := dialFrom(t, "127.0.0.9", addr)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := conn.WriteMsg(question("a.example.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	resp, err := conn.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Rcode != dns.RcodeRefused {
		t.Fatalf("outsider got %s, want REFUSED", dns.RcodeToString[resp.Rcode])
	}
	// The idle timeout is a minute and the deadline 5 s: EOF comes from the
	// server closing after the answer, not from a timeout.
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the outsider's answer: %v, want EOF", err)
	}
}

// A connection that never sends a query is held for the configured idle
// timeout, not for the fixed read timeout. Both bounds follow from the
// configuration: the server sets its deadline after the dial began, so it
// cannot close before start+idle, and is still open at start+readTimeout
// (less than idle); it must close by itself later.
func TestTCPIdleTimeoutBeforeFirstQuery(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	idle := tcpReadTimeout + time.Second
	env := newEnv(t, Options{Upstreams: []string{up.addr}, TCPIdleTimeout: idle})
	addr := env.start(t)
	start := time.Now()
	conn := dialFrom(t, "127.0.0.1", addr)
	conn.SetReadDeadline(start.Add(tcpReadTimeout + (idle-tcpReadTimeout)/2))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read before the idle timeout: %v, want the client's own deadline (server closed after %v, idle timeout %v)",
			err, time.Since(start), idle)
	}
	conn.SetReadDeadline(start.Add(idle + time.Minute))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read past the idle timeout: %v, want EOF", err)
	}
	if held := time.Since(start); held < idle {
		t.Errorf("closed after %v, before the idle timeout %v", held, idle)
	}
}

// The limiter counts clients and outsiders in separate pools; outsiders
// by /24 or /64, clients by address. Each step admits one connection, or
// releases the one admitted at step release.
func TestConnLimiterPools(t *testing.T) {
	members := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	member := func(a netip.Addr) bool {
		for _, p := range members {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	l := newConnLimiter(nil, tcpLimits{max: 3, perClient: 2, outsiders: 4, perOutsider: 2}, member, slog.New(slog.DiscardHandler))
	steps := []struct {
		client  string
		release int // index of an earlier step to release instead; -1 for none
		want    bool
	}{
		{"192.0.2.1", -1, true},      // 0: outsider
		{"192.0.2.200", -1, true},    // 1: same /24
		{"192.0.2.7", -1, false},     // 2: third from 192.0.2.0/24
		{"10.0.0.1", -1, true},       // 3: client, its own pool
		{"10.0.0.1", -1, true},       // 4
		{"10.0.0.1", -1, false},      // 5: third from one client
		{"2001:db9::1", -1, true},    // 6: IPv6 outsider
		{"2001:db9::ffff", -1, true}, // 7: same /64
		{"2001:db9::2", -1, false},   // 8: third from one /64
		{"198.51.100.1", -1, false},  // 9: outsiders' pool full (4)
		{"10.0.0.2", -1, true},       // 10: clients are not affected
		{"10.0.0.3", -1, false},      // 11: clients' total (3)
		{"", 0, true},                // 12: release an outsider
		{"198.51.100.1", -1, true},   // 13: room again
		{"", 3, true},                // 14: release a client
		{"10.0.0.3", -1, true},       // 15
	}
	admitted := map[int]*countedConn{}
	for i, st := range steps {
		if st.release >= 0 {
			l.release(admitted[st.release])
			continue
		}
		c := l.admit(netip.MustParseAddr(st.client))
		if got := c != nil; got != st.want {
			t.Fatalf("step %d (%s): admitted=%v, want %v", i, st.client, got, st.want)
		}
		admitted[i] = c
	}
	if got, want := l.open(), 3; got != want {
		t.Errorf("%d client connections counted, want %d", got, want)
	}
	if got, want := l.outsidersOpen(), 4; got != want {
		t.Errorf("%d outsider connections counted, want %d", got, want)
	}
	if clients, outsiders := l.rejectedTotals(); clients != 2 || outsiders != 3 {
		t.Errorf("rejected %d client and %d outsider connections, want 2 and 3", clients, outsiders)
	}
}
