package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestExit checks what a stopped egressd leaves behind: by default the
// table and its allowances stay (fail closed); with remove_on_exit the
// table goes and traffic flows unfiltered.
func TestExit(t *testing.T) {
	t.Parallel()
	requireNetns(t)
	for _, tc := range []struct {
		name         string
		removeOnExit bool
	}{
		{"table stays by default", false},
		{"remove_on_exit deletes the table", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t)
			cfg := g.egressdConfig()
			cfg.RemoveOnExit = tc.removeOnExit
			p := g.startEgressd(t, cfg)

			resolve(t, g.client1, g.dns1(), "allowed.test", dns.TypeA, allowedIP)
			expectReach(t, g.client1, ap(allowedIP, 80), "allowed.test resolved")
			expectDropped(t, g.client1, ap(unresolvedIP, 80), "egressd running")

			if err := p.stop(); err != nil {
				t.Errorf("egressd exit after SIGTERM: %v", err)
			}
			out, err := g.gw.Exec("nft", "list", "table", "inet", tableName)
			present := err == nil && strings.Contains(out, "table inet "+tableName)
			if present == tc.removeOnExit {
				t.Errorf("after exit with remove_on_exit=%t: table inet %s present=%t, want %t\n%s",
					tc.removeOnExit, tableName, present, !tc.removeOnExit, out)
			}
			expectReach(t, g.client1, ap(allowedIP, 80), "allowance made before egressd exited")
			if tc.removeOnExit {
				expectReach(t, g.client1, ap(unresolvedIP, 80), "table removed: nothing filters")
			} else {
				expectDropped(t, g.client1, ap(unresolvedIP, 80), "egressd stopped, table kept: still fail closed")
			}
		})
	}
}

// TestReload changes the policy with SIGHUP: the new rules take effect,
// and allowances made before the reload keep working because the table
// is replaced together with its live elements.
func TestReload(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	p := g.startEgressd(t, cfg)

	resolve(t, g.client1, g.dns1(), "allowed.test", dns.TypeA, allowedIP)
	expectReach(t, g.client1, ap(allowedIP, 80), "allowed.test resolved")

	cfg.Allow = append([]string{"denied.test"}, allowRules...)
	cfg.Deny = []string{"hidden.test"}
	p.reload(t, cfg)

	// Reload is asynchronous: poll until denied.test is answered.
	resp, err := p.pollDNS(g.client1, g.dns1(), "denied.test", 5*time.Second, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess })
	if err != nil {
		t.Fatalf("denied.test still not allowed after a reload that allows it: %v", err)
	}
	requireAddrs(t, "denied.test after reload", answerAddrs(resp), deniedIP)
	expectReach(t, g.client1, ap(deniedIP, 80), "denied.test allowed by the reloaded config")
	expectReach(t, g.client1, ap(allowedIP, 80), "allowance made before the reload")
	expectDropped(t, g.client1, ap(unresolvedIP, 80), "no name resolved to this address")

	// A broken config is refused and the running one stays.
	if err := os.WriteFile(p.config, []byte("[server\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-p.exited:
		t.Fatalf("egressd exited after reloading a broken config: %v", p.waitErr)
	default:
	}
	resolve(t, g.client1, g.dns1(), "denied.test", dns.TypeA, deniedIP)
	expectDropped(t, g.client1, ap(unresolvedIP, 80), "after a failed reload")
}
