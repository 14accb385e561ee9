package resolver

import (
	"bytes"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/dnstap"
	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/internal/wait"
)

// tapEvent is one call a Tap received.
type tapEvent struct {
	kind          string // client_query, client_response, forwarder_query, forwarder_response
	client, local netip.AddrPort
	tcp           bool
	server        string
	msg           []byte
	qname         string
}

type recordingTap struct {
	mu     sync.Mutex
	events []tapEvent
}

func (r *recordingTap) add(e tapEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recordingTap) ClientQuery(client, local netip.AddrPort, tcp bool, _ time.Time, msg []byte) {
	r.add(tapEvent{kind: "client_query", client: client, local: local, tcp: tcp, msg: bytes.Clone(msg)})
}

func (r *recordingTap) ClientResponse(client, local netip.AddrPort, tcp bool, _, _ time.Time, msg []byte) {
	r.add(tapEvent{kind: "client_response", client: client, local: local, tcp: tcp, msg: bytes.Clone(msg)})
}

func (r *recordingTap) Forwarded(server string, _, _ time.Time, query, reply *dns.Msg) {
	r.add(tapEvent{kind: "forwarder_query", server: server, qname: query.Question[0].Name})
	if reply != nil {
		r.add(tapEvent{kind: "forwarder_response", server: server, qname: reply.Question[0].Name})
	}
}

// take waits for n events and returns them, clearing the record.
func (r *recordingTap) take(t *testing.T, n int) []tapEvent {
	t.Helper()
	var got []tapEvent
	wait.Until(5*time.Second, time.Millisecond, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.events) < n {
			return false
		}
		got, r.events = r.events, nil
		return true
	})
	if len(got) != n {
		t.Fatalf("tap got %d events, want %d", len(got), n)
	}
	return got
}

// rawExchange sends query over network from a socket of its own and
// returns the socket's address, the bytes sent and the bytes received.
func rawExchange(t *testing.T, network, addr string, query *dns.Msg) (netip.AddrPort, []byte, []byte) {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	sent, err := query.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn := &dns.Conn{Conn: c}
	if _, err := conn.Write(sent); err != nil {
		t.Fatal(err)
	}
	got, err := conn.ReadMsgHeader(nil)
	if err != nil {
		t.Fatal(err)
	}
	return addrPortOf(c.LocalAddr()), sent, got
}

// Every client query and response reaches the Tap with the client's
// address and port, egressd's, the transport and the exact bytes; a
// cache miss adds the forwarder's query and reply, a hit does not.
func TestTapSeesClientAndForwarderMessages(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	tap := &recordingTap{}
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 10, Tap: tap})
	addr := env.start(t)
	server := netip.MustParseAddrPort(addr)

	tests := []struct {
		name    string
		network string
		kinds   []string
	}{
		{"udp miss", "udp", []string{"client_query", "forwarder_query", "forwarder_response", "client_response"}},
		{"udp hit", "udp", []string{"client_query", "client_response"}},
		{"tcp hit", "tcp", []string{"client_query", "client_response"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, sent, received := rawExchange(t, tt.network, addr, question("a.example.", dns.TypeA))
			events := tap.take(t, len(tt.kinds))
			for i, e := range events {
				if e.kind != tt.kinds[i] {
					t.Fatalf("event %d is %s, want %s (all: %v)", i, e.kind, tt.kinds[i], events)
				}
				switch e.kind {
				case "client_query", "client_response":
					if e.client != client || e.local != server || e.tcp != (tt.network == "tcp") {
						t.Errorf("%s: client %v local %v tcp %v, want %v %v %v", e.kind, e.client, e.local, e.tcp, client, server, tt.network == "tcp")
					}
					want := sent
					if e.kind == "client_response" {
						want = received
					}
					if !bytes.Equal(e.msg, want) {
						t.Errorf("%s: message %x, want %x", e.kind, e.msg, want)
					}
				default:
					if e.server != up.addr || e.qname != "a.example." {
						t.Errorf("%s: server %q qname %q, want %q a.example.", e.kind, e.server, e.qname, up.addr)
					}
				}
			}
		})
	}
}

// BenchmarkCacheHitReaderDnstap is BenchmarkCacheHitReader/bare with a
// dnstap file output taking every client query and response: the cost
// of dnstap on the request path (two copies into the queue). With no Tap
// the hooks are a nil check, and BenchmarkCacheHit* are unchanged.
func BenchmarkCacheHitReaderDnstap(b *testing.B) {
	env, req := benchEnv(b, false)
	env.srv.SetEnforcer(&enforce.None{})
	out, err := dnstap.Open(dnstap.Options{File: filepath.Join(b.TempDir(), "tap.fstrm"),
		Queue: 1 << 16, ClientQueries: true, ClientResponses: true})
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	env.srv.opts.Tap = out
	wire, err := req.Pack()
	if err != nil {
		b.Fatal(err)
	}
	benchReaderHits(b, env, wire)
	b.StopTimer()
	b.ReportMetric(float64(out.Dropped())/float64(b.N), "dropped/op")
}
