package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dialTimeout is how long a SYN may go unanswered before the destination
// counts as dropped. Everything is on one host, so real answers take
// well under a millisecond.
const dialTimeout = 500 * time.Millisecond

// dnsTimeout bounds one DNS exchange with egressd, which itself waits
// for the upstream and the firewall.
const dnsTimeout = 2 * time.Second

// connect opens a TCP connection from ns to dst and reads the service
// banner, proving that the handshake and data both got through.
func connect(ns *netns, dst netip.AddrPort) error {
	f, err := openFlow(ns, dst)
	if err != nil {
		return err
	}
	return f.Close()
}

// flow is an open connection to an internet service.
type flow struct {
	net.Conn
	r *bufio.Reader
}

// openFlow connects from ns to dst and reads the banner.
func openFlow(ns *netns, dst netip.AddrPort) (*flow, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		d := net.Dialer{Timeout: dialTimeout}
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	f := &flow{Conn: c, r: bufio.NewReader(c)}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := f.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connected but read no banner: %w", err)
	}
	if want := fmt.Sprintf("egressd-e2e %d\n", dst.Port()); line != want {
		c.Close()
		return nil, fmt.Errorf("banner %q, want %q", line, want)
	}
	return f, nil
}

// echo sends a line over the flow and waits for it to come back.
func (f *flow) echo(line string) error {
	_ = f.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(f, line+"\n"); err != nil {
		return err
	}
	got, err := f.r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echo %q, want %q", got, line+"\n")
	}
	return nil
}

// isDrop tells a firewall drop from other failures: a dropped forwarded
// packet goes unanswered (timeout), and a packet dropped on the local
// output path fails the send with EPERM.
func isDrop(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EPERM)
}

// expectReach fails the test unless ns can connect to dst.
func expectReach(t *testing.T, ns *netns, dst netip.AddrPort, why string) {
	t.Helper()
	if err := connect(ns, dst); err != nil {
		t.Errorf("%s: connect %s from %s: want success, got %v", why, dst, ns.Name, err)
	}
}

// expectDropped fails the test unless the SYN to dst goes unanswered:
// a refusal or an unreachable error is not what a drop looks like.
func expectDropped(t *testing.T, ns *netns, dst netip.AddrPort, why string) {
	t.Helper()
	err := connect(ns, dst)
	switch {
	case err == nil:
		t.Errorf("%s: connect %s from %s: want dropped (timeout), but it connected", why, dst, ns.Name)
	case !isDrop(err):
		t.Errorf("%s: connect %s from %s: want dropped (timeout), got %v", why, dst, ns.Name, err)
	}
}

// query sends one DNS question from ns to server over proto ("udp" or
// "tcp").
func query(ns *netns, server netip.AddrPort, proto, name string, qtype uint16) (*dns.Msg, error) {
	return queryWithin(ns, server, proto, name, qtype, dnsTimeout)
}

// expectDNSDropped fails unless a query to server goes unanswered.
func expectDNSDropped(t *testing.T, ns *netns, server netip.AddrPort, proto, why string) {
	t.Helper()
	resp, err := queryWithin(ns, server, proto, "allowed.test", dns.TypeA, dialTimeout)
	switch {
	case err == nil:
		t.Errorf("%s: DNS to %s over %s from %s: want dropped, got %s", why, server, proto, ns.Name, describe(resp))
	case !isDrop(err):
		t.Errorf("%s: DNS to %s over %s from %s: want dropped (timeout), got %v", why, server, proto, ns.Name, err)
	}
}

func queryWithin(ns *netns, server netip.AddrPort, proto, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		d := net.Dialer{Timeout: dialTimeout}
		c, err = d.Dial(proto, server.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	client := &dns.Client{Net: proto, Timeout: timeout}
	resp, _, err := client.ExchangeWithConn(m, &dns.Conn{Conn: c})
	return resp, err
}

// resolve asks egressd for name and returns the answer; anything but
// NOERROR with exactly the address want fails the test.
func resolve(t *testing.T, ns *netns, server netip.AddrPort, name string, qtype uint16, want netip.Addr) *dns.Msg {
	t.Helper()
	resp, err := query(ns, server, "udp", name, qtype)
	if err != nil {
		t.Fatalf("resolving %s %s via %s from %s: %v", name, dns.TypeToString[qtype], server, ns.Name, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("resolving %s %s via %s: rcode %s, want NOERROR\n%v", name, dns.TypeToString[qtype], server, dns.RcodeToString[resp.Rcode], resp)
	}
	addrs := answerAddrs(resp)
	if len(addrs) == 0 {
		t.Fatalf("resolving %s %s via %s: no addresses in the answer\n%v", name, dns.TypeToString[qtype], server, resp)
	}
	requireAddrs(t, fmt.Sprintf("resolving %s %s via %s from %s", name, dns.TypeToString[qtype], server, ns.Name), addrs, want)
	return resp
}

// expectNoAnswer asks for name's A records and wants the reply to carry
// rcode and no addresses; no reply at all fails the test. what names the
// case in messages.
func expectNoAnswer(t *testing.T, ns *netns, server netip.AddrPort, proto, name string, rcode int, what string) {
	t.Helper()
	resp, err := query(ns, server, proto, name, dns.TypeA)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if resp.Rcode != rcode || len(answerAddrs(resp)) != 0 {
		t.Errorf("%s: got %s, want %s without addresses", what, describe(resp), dns.RcodeToString[rcode])
	}
}

func answerAddrs(m *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answer {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// requireAddrs fails unless got is exactly want (order ignored).
func requireAddrs(t *testing.T, name string, got []netip.Addr, want ...netip.Addr) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: answer %v, want %v", name, got, want)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Fatalf("%s: answer %v, want %v", name, got, want)
		}
	}
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// describe renders a DNS response in one line for failure messages.
func describe(m *dns.Msg) string {
	if m == nil {
		return "<nil>"
	}
	var rrs []string
	for _, rr := range m.Answer {
		rrs = append(rrs, rr.String())
	}
	return fmt.Sprintf("rcode=%s answer=[%s]", dns.RcodeToString[m.Rcode], strings.Join(rrs, "; "))
}
