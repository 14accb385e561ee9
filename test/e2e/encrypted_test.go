package e2e

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

// TestEncryptedDNS runs egressd on the gateway with DNS over TLS and HTTPS
// and resolves through it with real clients: kdig and dig over TLS and
// HTTPS, and curl, which resolves over HTTPS and then connects. Each
// client's name opens its address only once that client resolved it, the
// query log names the transport, _dns.resolver.arpa names the endpoints
// (RFC 9462), and DNS over TLS to any other resolver stays dropped.
func TestEncryptedDNS(t *testing.T) {
	t.Parallel()
	tools := map[string]string{}
	for _, tool := range []string{"kdig", "dig", "curl"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			requireTool(t, tool)
		}
		tools[tool] = path
	}
	g := newGateway(t)

	// A resolver on the internet that also speaks on port 853: reachable
	// before egressd runs, dropped after.
	foreignDoT := ap(resolverAddr4, 853)
	var l net.Listener
	if err := g.inet.Do(func() (err error) { l, err = net.Listen("tcp", "[::]:853"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := dialOnly(g.client1, foreignDoT); err != nil {
		t.Fatalf("topology broken before egressd started: %s: %v", foreignDoT, err)
	}

	pki := dnstest.NewPKIFor(t, gwClient1)
	files := pki.WriteFiles(t, t.TempDir())
	cfg := g.egressdConfig()
	cfg.TLSListen = []netip.AddrPort{ap(gwClient1, 853)}
	cfg.HTTPSListen = []netip.AddrPort{ap(gwClient1, 443)}
	cfg.TLSCert, cfg.TLSKey = files.Cert, files.Key
	p := g.startEgressd(t, cfg)

	server := gwClient1.String()
	clients := []struct {
		name      string
		transport string
		n         int // the bulk name nN.bulk.test it resolves
		args      func(name string) []string
	}{
		{"kdig +tls", "tls", 41, func(name string) []string {
			return []string{tools["kdig"], "@" + server, "+tls", "+tls-ca=" + files.CA, "+tls-hostname=" + dnstest.ServerName, "+timeout=3", "+retry=0", name, "A"}
		}},
		{"kdig +https", "https", 42, func(name string) []string {
			return []string{tools["kdig"], "@" + server, "+https=/dns-query", "+tls-ca=" + files.CA, "+tls-hostname=" + dnstest.ServerName, "+timeout=3", "+retry=0", name, "A"}
		}},
		{"dig +tls", "tls", 43, func(name string) []string {
			return []string{tools["dig"], "@" + server, "+tls", "+tls-ca=" + files.CA, "+tls-hostname=" + dnstest.ServerName, "+time=3", "+tries=1", name, "A"}
		}},
		{"dig +https", "https", 44, func(name string) []string {
			return []string{tools["dig"], "@" + server, "+https", "+tls-ca=" + files.CA, "+tls-hostname=" + dnstest.ServerName, "+time=3", "+tries=1", name, "A"}
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			name := strings.TrimSuffix(bulkName(c.n), ".")
			dst := ap(bulkIP(c.n), 80)
			expectDropped(t, g.client1, dst, name+" not resolved yet")
			out, err := g.client1.Exec(c.args(name)[0], c.args(name)[1:]...)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if !strings.Contains(out, bulkIP(c.n).String()) {
				t.Fatalf("%s did not get %s:\n%s", c.name, bulkIP(c.n), out)
			}
			expectReach(t, g.client1, dst, name+" resolved with "+c.name)
			expectLogged(t, p, bulkName(c.n), c.transport)
		})
	}

	t.Run("curl --doh-url resolves and connects", func(t *testing.T) {
		const n = 45
		name := strings.TrimSuffix(bulkName(n), ".")
		expectDropped(t, g.client1, ap(bulkIP(n), 80), name+" not resolved yet")
		// The banner service is not HTTP: accept it as HTTP/0.9 and stop
		// after a moment, since it echoes until the client leaves.
		out, _ := g.client1.Exec(tools["curl"], "-sS", "--max-time", "3", "--http0.9",
			"--doh-url", "https://"+server+"/dns-query", "--cacert", files.CA, "http://"+name+"/")
		if !strings.Contains(out, "egressd-e2e 80") {
			t.Fatalf("curl did not reach %s through egressd's DoH and the firewall:\n%s", name, out)
		}
		expectLogged(t, p, bulkName(n), "https")
	})

	t.Run("DDR names the encrypted endpoints", func(t *testing.T) {
		resp, err := query(g.client1, g.dns1(), "udp", "_dns.resolver.arpa", dns.TypeSVCB)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, rr := range resp.Answer {
			got = append(got, strings.Join(strings.Fields(rr.String())[4:], " "))
		}
		want := []string{
			`1 dns.test. alpn="dot" port="853" ipv4hint="10.200.1.1"`,
			`2 dns.test. alpn="h2,http/1.1" port="443" ipv4hint="10.200.1.1" dohpath="/dns-query{?dns}"`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("_dns.resolver.arpa SVCB:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		expectNoAnswer(t, g.client1, g.dns1(), "udp", "use-application-dns.net", dns.RcodeNameError, "the DoH canary")
	})

	t.Run("DNS over TLS to another resolver is dropped", func(t *testing.T) {
		err := dialOnly(g.client1, foreignDoT)
		if err == nil || !isDrop(err) {
			t.Errorf("DoT to %s: want dropped (timeout), got %v", foreignDoT, err)
		}
	})
}

// dialOnly opens and closes a TCP connection from ns to dst.
func dialOnly(ns *netns, dst netip.AddrPort) error {
	return ns.Do(func() error {
		d := net.Dialer{Timeout: dialTimeout}
		c, err := d.Dial("tcp", dst.String())
		if err == nil {
			c.Close()
		}
		return err
	})
}

// expectLogged waits for the query log line of qname and checks its
// transport.
func expectLogged(t *testing.T, p *egressdProc, qname, transport string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(p.stdout.String(), "\n") {
			if strings.Contains(line, `"qname":"`+qname+`"`) && strings.Contains(line, `"qtype":"A"`) {
				if !strings.Contains(line, `"transport":"`+transport+`"`) {
					t.Errorf("query log line of %s does not name transport %s: %s", qname, transport, line)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("no query log line for %s", qname)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireTool skips the test without a client program, or fails it when
// EGRESSD_REQUIRE_NETNS=1 (./test/run installs them).
func requireTool(t *testing.T, tool string) {
	t.Helper()
	if os.Getenv("EGRESSD_REQUIRE_NETNS") == "1" {
		t.Fatalf("%s not found (./test/run installs it)", tool)
	}
	t.Skipf("%s not found; install knot-dnsutils, bind9-dnsutils and curl", tool)
}
