package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The "internet" side: one namespace holds an authoritative DNS server
// (also reachable as an open resolver) and TCP services on the addresses
// below. Each name maps to its own address so a test can tell exactly
// which allowance let a connection through.
var (
	resolverAddr4 = netip.MustParseAddr("10.200.2.2") // the open resolver
	resolverAddr6 = netip.MustParseAddr("fd00:200:2::2")

	allowedIP    = netip.MustParseAddr("10.200.10.1")
	unresolvedIP = netip.MustParseAddr("10.200.10.2") // no name points here
	deniedIP     = netip.MustParseAddr("10.200.10.3")
	portsIP      = netip.MustParseAddr("10.200.10.4")
	shortIP      = netip.MustParseAddr("10.200.10.5")
	hiddenIP     = netip.MustParseAddr("10.200.10.6") // behind cname.test
	refreshIP    = netip.MustParseAddr("10.200.10.7")
	v6IP         = netip.MustParseAddr("fd00:200:10::1")
	unresolved6  = netip.MustParseAddr("fd00:200:10::2")

	hostsRange4  = netip.MustParsePrefix("10.200.10.0/24")
	hostsRange6  = netip.MustParsePrefix("fd00:200:10::/64")
	servicePorts = []uint16{80, 443, 8443}
)

// Names nN.bulk.test (N from 1 to 99) answer 10.200.10.(100+N), for
// tests that need many distinct destinations.
const bulkDomain = "bulk.test."

func bulkName(n int) string { return fmt.Sprintf("n%d.%s", n, bulkDomain) }

func bulkIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 200, 10, byte(100 + n)}) }

// bulkRecord answers a bulk name, or reports that name is not one.
func bulkRecord(name string) (string, bool) {
	label, ok := strings.CutSuffix(name, "."+bulkDomain)
	if !ok || !strings.HasPrefix(label, "n") {
		return "", false
	}
	n, err := strconv.Atoi(label[1:])
	if err != nil || n < 1 || n > 99 {
		return "", false
	}
	return fmt.Sprintf("%s 300 IN A %s", name, bulkIP(n)), true
}

// shortTTL is the TTL of short.test and refresh.test, small so expiry
// fits in a test.
const shortTTL = 1

// zone is what the upstream server knows; every other name is NXDOMAIN.
var zone = map[string][]string{
	"allowed.test.": {"allowed.test. 300 IN A " + allowedIP.String()},
	"denied.test.":  {"denied.test. 300 IN A " + deniedIP.String()},
	"ports.test.":   {"ports.test. 300 IN A " + portsIP.String()},
	"short.test.":   {fmt.Sprintf("short.test. %d IN A %s", shortTTL, shortIP)},
	"refresh.test.": {fmt.Sprintf("refresh.test. %d IN A %s", shortTTL, refreshIP)},
	"v6.test.":      {"v6.test. 300 IN AAAA " + v6IP.String()},
	"cname.test.":   {"cname.test. 300 IN CNAME hidden.test."},
	"hidden.test.":  {"hidden.test. 300 IN A " + hiddenIP.String()},
}

// upstream is the authoritative server. It remembers which names it was
// asked for, so tests can show that denied names never left egressd.
type upstream struct {
	mu   sync.Mutex
	seen map[string]int
}

func (u *upstream) asked(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[dns.Fqdn(strings.ToLower(name))]
}

func (u *upstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	u.mu.Lock()
	u.seen[name]++
	u.mu.Unlock()

	records, ok := zone[name]
	if rr, isBulk := bulkRecord(name); isBulk {
		records, ok = []string{rr}, true
	}
	if !ok {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{mustRR("test. 60 IN SOA ns.test. admin.test. 1 60 60 60 60")}
		_ = w.WriteMsg(resp)
		return
	}
	// Follow in-zone CNAMEs the way an authoritative server does.
	for hops := 0; hops < 8 && ok; hops++ {
		var next string
		for _, text := range records {
			rr := mustRR(text)
			if c, isCNAME := rr.(*dns.CNAME); isCNAME {
				resp.Answer = append(resp.Answer, rr)
				next = c.Target
			} else if rr.Header().Rrtype == q.Qtype {
				resp.Answer = append(resp.Answer, rr)
			}
		}
		if next == "" {
			break
		}
		records, ok = zone[next]
	}
	if len(resp.Answer) == 0 {
		resp.Ns = []dns.RR{mustRR("test. 60 IN SOA ns.test. admin.test. 1 60 60 60 60")}
	}
	_ = w.WriteMsg(resp)
}

func mustRR(text string) dns.RR {
	rr, err := dns.NewRR(text)
	if err != nil {
		panic(err)
	}
	return rr
}

// startInternet serves DNS on port 53 (UDP and TCP, every address) and a
// banner service on servicePorts inside ns, until the test ends.
func startInternet(t *testing.T, ns *netns) *upstream {
	t.Helper()
	u := &upstream{seen: map[string]int{}}
	var pc net.PacketConn
	var listeners []net.Listener
	err := ns.Do(func() error {
		var err error
		// "[::]" is dual-stack: one socket serves both families.
		if pc, err = net.ListenPacket("udp", "[::]:53"); err != nil {
			return err
		}
		for _, port := range append([]uint16{53}, servicePorts...) {
			l, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
			if err != nil {
				return err
			}
			listeners = append(listeners, l)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("internet services: %v", err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: u}
	tcp := &dns.Server{Listener: listeners[0], Handler: u}
	for _, s := range []*dns.Server{udp, tcp} {
		// Shutdown only works on a started server: wait for it.
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("upstream DNS server did not start")
		}
	}
	for _, l := range listeners[1:] {
		go serveBanner(l)
	}
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		for _, l := range listeners[1:] {
			_ = l.Close()
		}
	})
	return u
}

// serveBanner answers every connection with "egressd-e2e PORT\n", so a
// client can tell a real connection from a half-open one, then echoes
// what it receives, so a test can keep using a flow it opened earlier.
func serveBanner(l net.Listener) {
	port := l.Addr().(*net.TCPAddr).Port
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(c, "egressd-e2e %d\n", port); err != nil {
				return
			}
			_, _ = io.Copy(c, c)
		}()
	}
}
