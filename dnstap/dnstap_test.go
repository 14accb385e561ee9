package dnstap

import (
	"bytes"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dt "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstaptest"
)

// reader accepts Frame Streams connections and hands on every frame.
type reader struct {
	ln     net.Listener
	frames chan *dt.Dnstap
	conns  chan net.Conn // accepted, for tests that close them
}

func listen(t *testing.T, network, addr string) *reader {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &reader{ln: ln, frames: make(chan *dt.Dnstap, 100), conns: make(chan net.Conn, 10)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns <- c
			go r.read(c)
		}
	}()
	return r
}

func (r *reader) read(c net.Conn) {
	dnstaptest.ReadFrames(c, func(m *dt.Dnstap) { r.frames <- m })
}

func (r *reader) next(t *testing.T) *dt.Dnstap {
	t.Helper()
	select {
	case m := <-r.frames:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no dnstap frame within 10s")
		return nil
	}
}

func wire(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	client = netip.MustParseAddrPort("192.0.2.7:40000")
	local  = netip.MustParseAddrPort("192.0.2.1:53")
	t0     = time.Unix(1700000000, 123456789)
	t1     = t0.Add(1500 * time.Microsecond)
)

// send emits one message of each kind: a forwarder query without a
// reply (a timeout), and one with.
func send(t *testing.T, o *Output) (q, r []byte) {
	query := new(dns.Msg).SetQuestion("example.com.", dns.TypeA)
	reply := new(dns.Msg).SetReply(query)
	reply.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 80)}}
	q, r = wire(t, query), wire(t, reply)
	o.ClientQuery(client, local, false, t0, q)
	o.ClientResponse(client, local, true, t0, t1, r)
	o.Forwarded("198.51.100.9:5353", t0, t1, query, nil)
	o.Forwarded("tls://[2001:db8::53]:853#dns.example", t0, t1, query, reply)
	return q, r
}

func ts(sec *uint64, nsec *uint32) time.Time {
	if sec == nil {
		return time.Time{}
	}
	return time.Unix(int64(*sec), int64(*nsec))
}

func addrPort(a []byte, p *uint32) netip.AddrPort {
	ip, ok := netip.AddrFromSlice(a)
	if !ok || p == nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, uint16(*p))
}

type want struct {
	typ          dt.Message_Type
	proto        dt.SocketProtocol
	family       dt.SocketFamily
	queryAddr    netip.AddrPort
	respAddr     netip.AddrPort
	qtime, rtime time.Time
	query, resp  bool
}

var allKinds = []want{
	{dt.Message_CLIENT_QUERY, dt.SocketProtocol_UDP, dt.SocketFamily_INET, client, local, t0, time.Time{}, true, false},
	{dt.Message_CLIENT_RESPONSE, dt.SocketProtocol_TCP, dt.SocketFamily_INET, client, local, t0, t1, false, true},
	{dt.Message_FORWARDER_QUERY, dt.SocketProtocol_UDP, dt.SocketFamily_INET, netip.AddrPort{}, netip.MustParseAddrPort("198.51.100.9:5353"), t0, time.Time{}, true, false},
	{dt.Message_FORWARDER_QUERY, dt.SocketProtocol_DOT, dt.SocketFamily_INET6, netip.AddrPort{}, netip.MustParseAddrPort("[2001:db8::53]:853"), t0, time.Time{}, true, false},
	{dt.Message_FORWARDER_RESPONSE, dt.SocketProtocol_DOT, dt.SocketFamily_INET6, netip.AddrPort{}, netip.MustParseAddrPort("[2001:db8::53]:853"), t0, t1, false, true},
}

func check(t *testing.T, got *dt.Dnstap, w want, q, r []byte) {
	t.Helper()
	if got.GetType() != dt.Dnstap_MESSAGE || string(got.GetIdentity()) != "gw1" || string(got.GetVersion()) != "egressd test" {
		t.Errorf("envelope: type %v identity %q version %q", got.GetType(), got.GetIdentity(), got.GetVersion())
	}
	m := got.GetMessage()
	if m.GetType() != w.typ {
		t.Fatalf("message type %v, want %v", m.GetType(), w.typ)
	}
	if m.GetSocketProtocol() != w.proto || m.GetSocketFamily() != w.family {
		t.Errorf("%v: protocol %v family %v, want %v %v", w.typ, m.GetSocketProtocol(), m.GetSocketFamily(), w.proto, w.family)
	}
	if a := addrPort(m.GetQueryAddress(), m.QueryPort); a != w.queryAddr {
		t.Errorf("%v: query address %v, want %v", w.typ, a, w.queryAddr)
	}
	if a := addrPort(m.GetResponseAddress(), m.ResponsePort); a != w.respAddr {
		t.Errorf("%v: response address %v, want %v", w.typ, a, w.respAddr)
	}
	if got := ts(m.QueryTimeSec, m.QueryTimeNsec); !got.Equal(w.qtime) {
		t.Errorf("%v: query time %v, want %v", w.typ, got, w.qtime)
	}
	if got := ts(m.ResponseTimeSec, m.ResponseTimeNsec); !got.Equal(w.rtime) {
		t.Errorf("%v: response time %v, want %v", w.typ, got, w.rtime)
	}
	wq, wr := []byte(nil), []byte(nil)
	if w.query {
		wq = q
	}
	if w.resp {
		wr = r
	}
	if !bytes.Equal(m.GetQueryMessage(), wq) || !bytes.Equal(m.GetResponseMessage(), wr) {
		t.Errorf("%v: query message %x response message %x, want %x %x", w.typ, m.GetQueryMessage(), m.GetResponseMessage(), wq, wr)
	}
}

// Each kind of message reaches a Frame Streams reader over a unix socket
// and over TCP with its type, transport, addresses, times and wire bytes.
func TestOutputSockets(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		network string
		addr    string
		opts    func(string) Options
	}{
		{"unix", "unix", filepath.Join(dir, "tap.sock"), func(a string) Options { return Options{Socket: a} }},
		{"tcp", "tcp", "127.0.0.1:0", func(a string) Options { return Options{Address: a} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := listen(t, tt.network, tt.addr)
			o := tt.opts(r.ln.Addr().String())
			o.Identity, o.Version = "gw1", "egressd test"
			o.ClientQueries, o.ClientResponses, o.Forwarder = true, true, true
			out, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			q, resp := send(t, out)
			for _, w := range allKinds {
				check(t, r.next(t), w, q, resp)
			}
		})
	}
}

func TestOutputFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tap.fstrm")
	out, err := Open(Options{File: path, Identity: "gw1", Version: "egressd test",
		ClientQueries: true, ClientResponses: true, Forwarder: true})
	if err != nil {
		t.Fatal(err)
	}
	q, resp := send(t, out)
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if out.Sent() != 5 || out.Dropped() != 0 || out.Lost() != 0 {
		t.Errorf("sent %d dropped %d lost %d, want 5 0 0", out.Sent(), out.Dropped(), out.Lost())
	}
	msgs, err := dnstaptest.ReadFile(path) // ends with the STOP frame
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(allKinds) {
		t.Fatalf("%d messages in the file, want %d", len(msgs), len(allKinds))
	}
	for i, w := range allKinds {
		check(t, msgs[i], w, q, resp)
	}
}

// Only the kinds switched on are written.
func TestOutputKinds(t *testing.T) {
	tests := []struct {
		name                    string
		queries, responses, fwd bool
		want                    []dt.Message_Type
	}{
		{"client queries", true, false, false, []dt.Message_Type{dt.Message_CLIENT_QUERY}},
		{"client responses", false, true, false, []dt.Message_Type{dt.Message_CLIENT_RESPONSE}},
		{"forwarder", false, false, true, []dt.Message_Type{dt.Message_FORWARDER_QUERY, dt.Message_FORWARDER_QUERY, dt.Message_FORWARDER_RESPONSE}},
		{"none", false, false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tap.fstrm")
			out, err := Open(Options{File: path, ClientQueries: tt.queries, ClientResponses: tt.responses, Forwarder: tt.fwd})
			if err != nil {
				t.Fatal(err)
			}
			send(t, out)
			out.Close()
			msgs, err := dnstaptest.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []dt.Message_Type
			for _, m := range msgs {
				got = append(got, m.GetMessage().GetType())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("wrote %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("wrote %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// stalled accepts connections and never reads from them; with handshake
// it first completes the Frame Streams handshake. stop closes the
// listener and the connections.
func stalled(t *testing.T, handshake bool) (path string, stop func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "stalled.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		conns   []net.Conn
		stopped bool
	)
	stop = func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		ln.Close()
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if stopped {
				c.Close()
			} else {
				conns = append(conns, c)
			}
			mu.Unlock()
			if handshake {
				framestream.NewReader(c, &framestream.ReaderOptions{ContentTypes: [][]byte{dt.FSContentType}, Bidirectional: true})
			}
		}
	}()
	return path, stop
}

// A reader that never reads must not slow the request path: every call
// returns, the queue holds what it can, the rest is dropped and counted.
func TestQueueFullNeverBlocks(t *testing.T) {
	const queue = 64
	tests := []struct {
		name      string
		handshake bool
		messages  int
		// exact: the writer never takes a message (stuck in the
		// handshake), so exactly messages-queue are dropped.
		exact bool
	}{
		{"no handshake", false, 1000, true},
		// Enough bytes to fill any socket buffer many times over.
		{"handshake, then no reads", true, 100000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, stop := stalled(t, tt.handshake)
			out, err := Open(Options{Socket: path, Queue: queue, ClientQueries: true, Timeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			msg := make([]byte, 1024)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range tt.messages {
					out.ClientQuery(client, local, false, t0, msg)
				}
			}()
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatal("ClientQuery blocked on a reader that does not read")
			}
			d := out.Dropped()
			if tt.exact && d != uint64(tt.messages-queue) {
				t.Errorf("dropped %d, want %d (queue %d)", d, tt.messages-queue, queue)
			}
			if !tt.exact && (d == 0 || d > uint64(tt.messages-queue)) {
				t.Errorf("dropped %d of %d, want some, at most %d", d, tt.messages, tt.messages-queue)
			}
			if tt.exact && out.Sent() != 0 {
				t.Errorf("sent %d before the handshake", out.Sent())
			}
			// With the reader gone the writer's hour-long wait ends.
			stop()
			out.Close()
		})
	}
}

// A reader that goes away is reconnected to; messages flow again.
func TestOutputReconnects(t *testing.T) {
	r := listen(t, "unix", filepath.Join(t.TempDir(), "tap.sock"))
	out, err := Open(Options{Socket: r.ln.Addr().String(), ClientQueries: true, Retry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	out.ClientQuery(client, local, false, t0, []byte("first"))
	if m := r.next(t); string(m.GetMessage().GetQueryMessage()) != "first" {
		t.Fatalf("got %q", m.GetMessage().GetQueryMessage())
	}
	(<-r.conns).Close()
	// Messages written into the dead connection are lost; keep sending
	// until one arrives over the new one.
	deadline := time.After(time.Minute)
	for {
		out.ClientQuery(client, local, false, t0, []byte("again"))
		select {
		case m := <-r.frames:
			if string(m.GetMessage().GetQueryMessage()) != "again" {
				t.Fatalf("got %q", m.GetMessage().GetQueryMessage())
			}
			if len(r.conns) != 1 {
				t.Errorf("%d new connections, want 1", len(r.conns))
			}
			return
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("no message after the reader reconnected")
		}
	}
}

func TestOpenNeedsOneDestination(t *testing.T) {
	for _, o := range []Options{{}, {Socket: "a", Address: "b:1"}, {File: "f", Socket: "s"}} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}
