package e2e

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/netnstest"
)

// TestNftRulesLoads feeds `egressd nft-rules` output to nft, first as a
// dry run (-c) and then for real, in a fresh namespace.
func TestNftRulesLoads(t *testing.T) {
	t.Parallel()
	requireNetns(t)
	bin := egressdBinary(t)
	base := egressdConfig{
		Listen:   []netip.AddrPort{ap(gwClient1, 53), ap(gwClient1v6, 53)},
		Clients:  []string{"10.200.1.0/24", "fd00:200:1::/64"},
		Upstream: ap(resolverAddr4, 53),
		Hooks:    []string{"forward"},
	}
	cases := []struct {
		name string
		edit func(*egressdConfig)
	}{
		{"forward hook, group scope", func(*egressdConfig) {}},
		{"forward and output hooks, client scope", func(c *egressdConfig) {
			c.Hooks = []string{"forward", "output"}
			c.Scope = "client"
		}},
		{"audit mode", func(c *egressdConfig) { c.Mode = "audit" }},
	}
	id := netnstest.RandomID()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			path := writeConfig(t, cfg)
			rules, err := exec.Command(bin, "nft-rules", "-config", path).Output()
			if err != nil {
				t.Fatalf("egressd nft-rules: %v\n%s", err, stderrOf(err))
			}
			ns := newNetns(t, id, string(rune('a'+i)))
			if out, err := ns.ExecInput(rules, "nft", "-c", "-f", "-"); err != nil {
				t.Fatalf("nft -c rejects the ruleset: %v\n%s\nruleset:\n%s", err, out, rules)
			}
			if out, err := ns.ExecInput(rules, "nft", "-f", "-"); err != nil {
				t.Fatalf("nft -f rejects the ruleset: %v\n%s\nruleset:\n%s", err, out, rules)
			}
			listed, err := ns.Exec("nft", "list", "table", "inet", tableName)
			if err != nil {
				t.Fatalf("table not loaded: %v\nruleset:\n%s", err, rules)
			}
			for _, hook := range cfg.Hooks {
				if !strings.Contains(listed, "hook "+hook) {
					t.Errorf("loaded table has no %s hook:\n%s", hook, listed)
				}
			}
		})
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
