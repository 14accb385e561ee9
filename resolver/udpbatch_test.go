package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/enforce"
)

// numberedAnswer answers nN.example. with 192.0.2.N (N < 256), so every
// answer tells which question it belongs to.
func numberedAnswer(w dns.ResponseWriter, r *dns.Msg, _ bool) {
	m := new(dns.Msg)
	m.SetReply(r)
	var n int
	if _, err := fmt.Sscanf(r.Question[0].Name, "n%d.example.", &n); err == nil {
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   net.IPv4(192, 0, 2, byte(n)),
		}}
	}
	w.WriteMsg(m)
}

// TestUDPBatchesAnswerEachClient floods the reader from many sockets at
// once, so reads return many datagrams, and checks every client gets the
// answer to each of its own queries: the first round from workers (cache
// misses), the second from the reader's batches (hits).
func TestUDPBatchesAnswerEachClient(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(listen, func(t *testing.T) {
			up := startUpstream(t, numberedAnswer)
			const clients, perClient = 16, 40
			// The sockets share one address, which makes them one client
			// for the in-flight share: let it hold the whole first round.
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 1000, Enforcer: &enforce.None{}, MaxInFlightPerClient: clients * perClient})
			addr := env.startOn(t, listen)
			for round := range 2 {
				var wg sync.WaitGroup
				errs := make(chan error, clients)
				for c := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- floodClient(addr, c, perClient)
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
			}
			if got := int(up.queries.Load()); got > perClient*clients {
				t.Errorf("upstream saw %d queries; the second round should have been answered from the cache", got)
			}
		})
	}
}

// floodClient sends n queries for names picked by client before reading
// any answer, then checks each answer matches a query of its own.
func floodClient(addr string, client, n int) error {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	want := map[uint16]int{} // ID -> name number
	for i := range n {
		num := (client*n + i) % 250
		m := question(fmt.Sprintf("n%d.example.", num), dns.TypeA)
		m.Id = uint16(client<<8 | i)
		b, err := m.Pack()
		if err != nil {
			return err
		}
		if _, err := conn.Write(b); err != nil {
			return err
		}
		want[m.Id] = num
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	for range n {
		k, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("client %d: %d answers missing: %w", client, len(want), err)
		}
		var resp dns.Msg
		if err := resp.Unpack(buf[:k]); err != nil {
			return err
		}
		num, ok := want[resp.Id]
		if !ok {
			return fmt.Errorf("client %d: answer with ID %#x it did not ask (or got twice)", client, resp.Id)
		}
		delete(want, resp.Id)
		name := fmt.Sprintf("n%d.example.", num)
		if len(resp.Question) != 1 || resp.Question[0].Name != name {
			return fmt.Errorf("client %d: ID %#x answered %v, want %s", client, resp.Id, resp.Question, name)
		}
		if len(resp.Answer) != 1 || !resp.Answer[0].(*dns.A).A.Equal(net.IPv4(192, 0, 2, byte(num))) {
			return fmt.Errorf("client %d: %s answered %v", client, name, resp.Answer)
		}
	}
	return nil
}

// TestUDPBatchOverlongQuery: a datagram longer than the reader keeps gets
// FORMERR with its ID when it comes from a client, and nothing otherwise.
func TestUDPBatchOverlongQuery(t *testing.T) {
	for _, tt := range []struct {
		name    string
		clients []netip.Prefix
		answer  bool
	}{
		{"client", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true},
		{"outsider", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, Options{Upstreams: []string{"127.0.0.1:1"}, Enforcer: &enforce.None{}, Settings: Settings{Clients: tt.clients}})
			addr := env.startOn(t, "127.0.0.1:0")
			m := question("a.example.", dns.TypeA)
			m.Id = 0x4242
			m.SetEdns0(8192, false)
			m.Extra[0].(*dns.OPT).Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, udpReadBuffer)}}
			b, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(b); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			buf := make([]byte, 1500)
			n, err := conn.Read(buf)
			if !tt.answer {
				if err == nil {
					t.Fatalf("an outsider got %d bytes", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var resp dns.Msg
			if err := resp.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if resp.Id != m.Id || resp.Rcode != dns.RcodeFormatError || !resp.Response || !resp.RecursionDesired {
				t.Errorf("answer %v, want FORMERR to ID %#x with RD echoed", &resp, m.Id)
			}
		})
	}
}
