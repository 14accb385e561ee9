package resolver

import (
	"errors"
	"io"
	"log/slog"
	"net"
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
	l := newConnLimiter(ln, 2, 2, slog.New(slog.DiscardHandler))
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
