package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/querylog"
)

// TestDropEvents: with drop events sent to NFLOG, each dropped connect
// becomes a "drop" query log line with the reason egressd derives from
// its recent answers, and `egressd why` explains a drop on demand.
func TestDropEvents(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.GroupClients = []string{"10.200.1.0/24", "fd00:200:1::/64"} // client2 is in no group
	cfg.Grace = "1s"
	cfg.QueryLog = filepath.Join(t.TempDir(), "queries.log")
	cfg.DropEvents = "nflog"
	cfg.MetricsListen = "127.0.0.1:9153"
	p := g.startEgressd(t, cfg)

	t.Run("never resolved", func(t *testing.T) {
		expectDropped(t, g.client1, ap(unresolvedIP, 80), "no name resolved to this address")
		expectDropLine(t, cfg.QueryLog, "10.200.1.10", unresolvedIP, 80, "never_resolved", "")
	})
	t.Run("other ports", func(t *testing.T) {
		resolve(t, g.client1, g.dns1(), "ports.test", dns.TypeA, portsIP)
		expectDropped(t, g.client1, ap(portsIP, 8443), "rule ports.test:443 does not cover 8443")
		e := expectDropLine(t, cfg.QueryLog, "10.200.1.10", portsIP, 8443, "other_ports", "ports.test")
		if ports := e.Drop.ApprovedPorts; len(ports) == 0 || ports[0] != "443/tcp" {
			t.Errorf("approved_ports = %v, want 443/tcp first", ports)
		}

		out, err := p.ns.Exec(egressdBinary(t), "why", "-config", p.config, "-client", "10.200.1.10", ap(portsIP, 8443).String())
		if err != nil {
			t.Fatalf("egressd why: %v\n%s", err, out)
		}
		for _, want := range []string{"other_ports", "ports.test. is approved only on 443/tcp", "policy now for ports.test.: allow"} {
			if !strings.Contains(out, want) {
				t.Errorf("egressd why output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("expired", func(t *testing.T) {
		resolve(t, g.client1, g.dns1(), "short.test", dns.TypeA, shortIP)
		resolved := time.Now()
		// TTL (1s) plus grace (1s) have passed; 700ms absorbs scheduling.
		time.Sleep(time.Until(resolved.Add(shortTTL*time.Second + time.Second + 700*time.Millisecond)))
		expectDropped(t, g.client1, ap(shortIP, 80), "short.test's TTL plus grace has passed")
		e := expectDropLine(t, cfg.QueryLog, "10.200.1.10", shortIP, 80, "expired", "short.test")
		if e.Drop.AnswerTime == "" || e.Drop.Expiry == "" {
			t.Errorf("expired drop without answer time or expiry: %+v", e.Drop)
		}
	})
	t.Run("foreign resolver", func(t *testing.T) {
		expectDropped(t, g.client1, ap(resolverAddr4, 53), "DNS to another server than egressd")
		expectDropLine(t, cfg.QueryLog, "10.200.1.10", resolverAddr4, 53, "foreign_resolver", "")
	})
	t.Run("unlisted source", func(t *testing.T) {
		expectDropped(t, g.client2, ap(unresolvedIP, 81), "client2 is in no group")
		expectDropLine(t, cfg.QueryLog, "10.200.3.10", unresolvedIP, 81, "unlisted_source", "")
	})
}

// TestDropEventsNameDenied: a client whose group denies a name connects
// to the address another group's client resolved it to, after asking
// for the name itself and being denied: the drop is name_denied with the
// name and the rule, and egressd why says what the policy decides now.
func TestDropEventsNameDenied(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.GroupClients = []string{"10.200.1.0/24", "fd00:200:1::/64"} // denies hidden.test
	cfg.ExtraGroups = "[[group]]\nname = \"lab\"\nclients = [\"10.200.3.0/24\"]\nallow = [\"hidden.test\"]\ndefault = \"deny\"\nallow_private_answers = true\n"
	cfg.QueryLog = filepath.Join(t.TempDir(), "queries.log")
	cfg.DropEvents = "nflog"
	cfg.MetricsListen = "127.0.0.1:9153"
	p := g.startEgressd(t, cfg)

	resolve(t, g.client2, g.dns1(), "hidden.test", dns.TypeA, hiddenIP)
	expectNoAnswer(t, g.client1, g.dns1(), "udp", "hidden.test", dns.RcodeNameError, "hidden.test is denied to client1's group")
	expectDropped(t, g.client1, ap(hiddenIP, 80), "only lab may reach hidden.test")
	e := expectDropLine(t, cfg.QueryLog, "10.200.1.10", hiddenIP, 80, "name_denied", "hidden.test")
	if e.Rule != "hidden.test" {
		t.Errorf("rule = %q, want hidden.test", e.Rule)
	}
	out, err := p.ns.Exec(egressdBinary(t), "why", "-config", p.config, "-client", "10.200.1.10", ap(hiddenIP, 80).String())
	if err != nil {
		t.Fatalf("egressd why: %v\n%s", err, out)
	}
	for _, want := range []string{"name_denied", "hidden.test. was denied by rule hidden.test", "policy now for hidden.test.: deny (rule hidden.test)"} {
		if !strings.Contains(out, want) {
			t.Errorf("egressd why output lacks %q:\n%s", want, out)
		}
	}
}

// TestDropEventsAfterRestart: approvals made before a restart (the table
// kept) still explain drops after it, from the live set elements the new
// egressd reads at start: the name (kept in the element's comment), the
// ports, and the expiry.
func TestDropEventsAfterRestart(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	// short.test's element lives its TTL (1s) plus grace: long enough for
	// the restart to find it live.
	cfg.Grace = "8s"
	cfg.QueryLog = filepath.Join(t.TempDir(), "queries.log")
	cfg.DropEvents = "nflog"
	cfg.MetricsListen = "127.0.0.1:9153"
	p := g.startEgressd(t, cfg)
	resolve(t, g.client1, g.dns1(), "ports.test", dns.TypeA, portsIP)
	resolve(t, g.client1, g.dns1(), "short.test", dns.TypeA, shortIP)
	resolved := time.Now()
	if err := p.stop(); err != nil {
		t.Fatalf("egressd exited with %v", err)
	}
	p = g.startEgressd(t, cfg)
	if time.Since(resolved) >= shortTTL*time.Second+8*time.Second {
		t.Fatal("the restart took longer than short.test's element lives; nothing left to inherit")
	}

	expectDropped(t, g.client1, ap(portsIP, 8443), "rule ports.test:443 does not cover 8443")
	e := expectDropLine(t, cfg.QueryLog, "10.200.1.10", portsIP, 8443, "other_ports", "ports.test")
	if ports := e.Drop.ApprovedPorts; len(ports) != 1 || ports[0] != "443/tcp" {
		t.Errorf("approved_ports = %v, want [443/tcp] from the element", ports)
	}
	out, err := p.ns.Exec(egressdBinary(t), "why", "-config", p.config, "-client", "10.200.1.10", ap(portsIP, 8443).String())
	if err != nil {
		t.Fatalf("egressd why: %v\n%s", err, out)
	}
	for _, want := range []string{"other_ports", "ports.test. is approved only on 443/tcp"} {
		if !strings.Contains(out, want) {
			t.Errorf("egressd why output lacks %q:\n%s", want, out)
		}
	}

	// TTL plus grace have passed; 700ms absorbs scheduling.
	time.Sleep(time.Until(resolved.Add(shortTTL*time.Second + 8*time.Second + 700*time.Millisecond)))
	expectDropped(t, g.client1, ap(shortIP, 80), "short.test's TTL plus grace has passed")
	e = expectDropLine(t, cfg.QueryLog, "10.200.1.10", shortIP, 80, "expired", "short.test")
	if e.Drop.Expiry == "" {
		t.Errorf("expired drop without expiry: %+v", e.Drop)
	}
}

type dropLine struct {
	Client   string         `json:"client"`
	Rule     string         `json:"rule"`
	QName    string         `json:"qname"`
	Decision string         `json:"decision"`
	Drop     *querylog.Drop `json:"drop"`
}

// expectDropLine waits for the drop line of client's packet to dst:port
// and checks its reason and name. The line is written once the event
// arrives; the wait is a failure bound.
func expectDropLine(t *testing.T, path, client string, dst netip.Addr, port uint16, reason, name string) dropLine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(data), "\n") {
			var e dropLine
			if json.Unmarshal([]byte(line), &e) != nil || e.Decision != "drop" || e.Drop == nil {
				continue
			}
			if e.Client != client || e.Drop.Destination != dst.String() || e.Drop.Port != port {
				continue
			}
			if e.Drop.Reason != reason || strings.TrimSuffix(e.QName, ".") != name || e.Drop.Protocol != "tcp" {
				t.Errorf("drop line %s: want reason %s, name %q, protocol tcp", line, reason, name)
			}
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("no drop line for %s -> %s:%d in the query log:\n%s", client, dst, port, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDropEventsClientScope: with scope client, a client connecting to an
// address another client resolved gets resolved_by_other_client naming
// that client, in the log and from egressd why.
func TestDropEventsClientScope(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.Scope = "client"
	cfg.QueryLog = filepath.Join(t.TempDir(), "queries.log")
	cfg.DropEvents = "both"
	cfg.MetricsListen = "127.0.0.1:9153"
	p := g.startEgressd(t, cfg)

	resolve(t, g.client1, g.dns1(), "allowed.test", dns.TypeA, allowedIP)
	expectDropped(t, g.client2, ap(allowedIP, 80), "client2 did not resolve allowed.test (scope client)")
	e := expectDropLine(t, cfg.QueryLog, "10.200.3.10", allowedIP, 80, "resolved_by_other_client", "allowed.test")
	if e.Drop.ResolvedBy != "10.200.1.10" {
		t.Errorf("resolved_by = %q, want 10.200.1.10", e.Drop.ResolvedBy)
	}
	out, err := p.ns.Exec(egressdBinary(t), "why", "-config", p.config, "-client", "10.200.3.10", ap(allowedIP, 80).String())
	if err != nil {
		t.Fatalf("egressd why: %v\n%s", err, out)
	}
	if !strings.Contains(out, "resolved_by_other_client") || !strings.Contains(out, "for client 10.200.1.10") {
		t.Errorf("egressd why output:\n%s", out)
	}

	var metrics string
	// The socket is made on a thread inside the gateway's namespace
	// (http.Get would dial from another thread).
	err = p.ns.Do(func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9153", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		metrics = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metrics, `egressd_drops_total{group="clients",reason="resolved_by_other_client"} 1`) {
		t.Errorf("metrics lack the drop count:\n%s", grepLines(metrics, "egressd_drop"))
	}
	if !strings.Contains(metrics, "egressd_drop_events_lost_total 0") {
		t.Errorf("metrics lack egressd_drop_events_lost_total 0:\n%s", grepLines(metrics, "egressd_drop"))
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
