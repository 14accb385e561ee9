package resolver

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testUpstream is an in-process DNS server on one loopback port, UDP and
// TCP, answering with the handler a test gives it.
type testUpstream struct {
	addr    string
	queries atomic.Int32 // queries received, both transports

	mu   sync.Mutex
	seen []*dns.Msg // every query received, in order
}

// upstreamHandler answers one query; udp tells the transport.
type upstreamHandler func(w dns.ResponseWriter, r *dns.Msg, udp bool)

func startUpstream(t testing.TB, h upstreamHandler) *testUpstream {
	t.Helper()
	tcp, udp, err := bindPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{addr: tcp.Addr().String()}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		u.mu.Lock()
		u.seen = append(u.seen, r.Copy())
		u.mu.Unlock()
		_, isUDP := w.RemoteAddr().(*net.UDPAddr)
		h(w, r, isUDP)
	})
	servers := []*dns.Server{
		{PacketConn: udp, Handler: handler, UDPSize: dns.MaxMsgSize},
		{Listener: tcp, Handler: handler, ReadTimeout: time.Second},
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

func (u *testUpstream) lastQuery() *dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

// staticAnswer answers every query with rcode and the given records (zone
// file syntax), in the answer and authority sections.
func staticAnswer(t testing.TB, rcode int, answer, authority []string) upstreamHandler {
	t.Helper()
	an, ns := mustRRs(t, answer), mustRRs(t, authority)
	return func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		m.Answer, m.Ns = an, ns
		w.WriteMsg(m)
	}
}

// silent never answers, so the client times out.
func silent(dns.ResponseWriter, *dns.Msg, bool) {}

func mustRRs(t testing.TB, texts []string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for _, s := range texts {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad test record %q: %v", s, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}
