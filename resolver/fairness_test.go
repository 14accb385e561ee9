package resolver

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/metrics"
)

// slowUpstream answers names under slow.example. only once release is
// called and everything else at once.
func slowUpstream(t *testing.T) (up *testUpstream, release func()) {
	released := make(chan struct{})
	up = startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		name := r.Question[0].Name
		if strings.HasSuffix(name, ".slow.example.") {
			<-released
			w.WriteMsg(new(dns.Msg).SetRcode(r, dns.RcodeServerFailure))
			return
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = mustRRs(t, []string{name + " 300 IN A 192.0.2.1"})
		w.WriteMsg(m)
	})
	return up, func() { close(released) }
}

// udpFrom sends queries from one loopback address.
type udpFrom struct {
	t    *testing.T
	conn *net.UDPConn
}

func dialUDPFrom(t *testing.T, from, server string) *udpFrom {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpFrom{t: t, conn: conn}
}

func (c *udpFrom) send(name string) uint16 {
	c.t.Helper()
	m := question(name, dns.TypeA)
	b, err := m.Pack()
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
	return m.Id
}

// ask sends name and waits for the answer with that ID; other replies
// (to earlier queries) are skipped. The deadline only detects a query
// that is never answered.
func (c *udpFrom) ask(name string) (*dns.Msg, error) {
	c.t.Helper()
	id := c.send(name)
	buf := make([]byte, dns.MaxMsgSize)
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) == nil && m.Id == id {
			return &m, nil
		}
	}
}

// askTCP sends name over TCP from a loopback address.
func askTCP(t *testing.T, from, server, name string) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}}
	m, _, err := c.Exchange(question(name, dns.TypeA), server)
	return m, err
}

// One client flooding names whose upstream never answers takes at most
// its share of the queries in flight; the rest of its queries are
// dropped (UDP) or SERVFAIL (TCP). Other clients' cache hits never wait
// for a slot, even when every slot is taken, and their misses are
// answered while slots remain.
func TestInFlightFairShare(t *testing.T) {
	const (
		limit     = 8
		perClient = 4
		flood     = 20
	)
	up, release := slowUpstream(t)
	m := metrics.New()
	rec := &logRecorder{}
	env := newEnv(t, Options{
		Logger:    slog.New(rec),
		Upstreams: []string{up.addr}, CacheSize: 100,
		Timeout:     time.Minute, // slow names hold their slots until the test ends
		MaxInFlight: limit, MaxInFlightPerClient: perClient,
		Enforcer: &enforce.None{}, Metrics: m,
	})
	addr := env.start(t)
	// Registered after the server's shutdown, so it runs first and lets
	// the waiting exchanges end.
	t.Cleanup(release)
	flooder, polite := dialUDPFrom(t, "127.0.0.2", addr), dialUDPFrom(t, "127.0.0.3", addr)
	if _, err := polite.ask("hit.example."); err != nil {
		t.Fatal(err)
	}

	// floods sends flood slow names from c, then a cache hit: the reader
	// handles one socket's datagrams in order, so once the hit is
	// answered every query of the flood has been taken or dropped.
	floods := func(c *udpFrom, who string) {
		t.Helper()
		for i := range flood {
			c.send(fmt.Sprintf("%s-%d.slow.example.", who, i))
		}
		if _, err := c.ask("hit.example."); err != nil {
			t.Fatalf("%s's cache hit after its flood: %v", who, err)
		}
	}
	check := func(step string, inFlight int64, droppedClient, droppedTotal float64) {
		t.Helper()
		// A query gives its slot back just after its answer is written, so
		// the client can read the answer before the count falls: wait for
		// the slots of answered queries, which must come back.
		wait.Until(5*time.Second, time.Millisecond, func() bool { return env.srv.inFlight.n.Load() == inFlight })
		if n := env.srv.inFlight.n.Load(); n != inFlight {
			t.Errorf("%s: %d queries in flight, want %d", step, n, inFlight)
		}
		if got := testutil.ToFloat64(m.InFlightDropped.WithLabelValues("client")); got != droppedClient {
			t.Errorf("%s: %v dropped over a client's share, want %v", step, got, droppedClient)
		}
		if got := testutil.ToFloat64(m.InFlightDropped.WithLabelValues("total")); got != droppedTotal {
			t.Errorf("%s: %v dropped over the total, want %v", step, got, droppedTotal)
		}
	}

	floods(flooder, "a")
	check("one client flooding", perClient, flood-perClient, 0)
	// The first drop is logged at once, naming the client; the rest of the
	// flood waits for dropWarnInterval.
	if lines := rec.with(msgInFlightDropped); len(lines) != 1 || lines[0]["last_client"] != "127.0.0.2" || lines[0]["over_client_share"] != "1" {
		t.Errorf("drop warnings %v, want one naming 127.0.0.2 with 1 dropped", lines)
	}
	answers := []struct {
		name  string
		ask   func() (*dns.Msg, error)
		rcode int
	}{
		{"another client's UDP cache hit", func() (*dns.Msg, error) { return polite.ask("hit.example.") }, dns.RcodeSuccess},
		{"another client's UDP miss", func() (*dns.Msg, error) { return polite.ask("miss1.example.") }, dns.RcodeSuccess},
		{"another client's TCP cache hit", func() (*dns.Msg, error) { return askTCP(t, "127.0.0.3", addr, "hit.example.") }, dns.RcodeSuccess},
		{"another client's TCP miss", func() (*dns.Msg, error) { return askTCP(t, "127.0.0.3", addr, "miss2.example.") }, dns.RcodeSuccess},
		{"the flooder's TCP miss is over its share", func() (*dns.Msg, error) { return askTCP(t, "127.0.0.2", addr, "miss3.example.") }, dns.RcodeServerFailure},
	}
	for _, a := range answers {
		resp, err := a.ask()
		if err != nil {
			t.Fatalf("%s: %v", a.name, err)
		}
		if resp.Rcode != a.rcode {
			t.Errorf("%s: %s, want %s", a.name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[a.rcode])
		}
	}
	check("after the other client's queries", perClient, flood-perClient+1, 0)

	// A second flooder takes the remaining slots: nothing is left for
	// misses, but hits are still answered at once.
	floods(dialUDPFrom(t, "127.0.0.4", addr), "b")
	check("two clients flooding", limit, 2*(flood-perClient)+1, 0)
	if resp, err := polite.ask("hit.example."); err != nil || resp.Rcode != dns.RcodeSuccess {
		t.Errorf("UDP cache hit with every slot taken: %v %v", resp, err)
	}
	if resp, err := askTCP(t, "127.0.0.3", addr, "hit.example."); err != nil || resp.Rcode != dns.RcodeSuccess {
		t.Errorf("TCP cache hit with every slot taken: %v %v", resp, err)
	}
	if resp, err := askTCP(t, "127.0.0.3", addr, "miss4.example."); err != nil || resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("TCP miss with every slot taken: %v %v, want SERVFAIL", resp, err)
	}
	check("every slot taken", limit, 2*(flood-perClient)+1, 1)
}
