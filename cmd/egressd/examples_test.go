package main

import (
	"os"
	"strings"
	"testing"

	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/firewall"
)

// The ruleset preview in examples/gateway/README.md is what nft-rules
// prints for that config in enforce mode (IPv6 lines left out, as the
// README says, and its # notes ignored).
func TestGatewayReadmeShowsTheRuleset(t *testing.T) {
	readme, err := os.ReadFile("../../examples/gateway/README.md")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../examples/gateway/egressd.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("egressd.toml", []byte(strings.Replace(string(data), "\nmode = \"audit\"", "\nmode = \"enforce\"", 1)))
	if err != nil {
		t.Fatal(err)
	}
	rendered := firewall.Render(firewallSpec(cfg, cfg))
	for _, chain := range []string{"chain forward {", "chain g_servers {"} {
		want := chainLines(rendered, chain, true)
		got := chainLines(string(readme), chain, false)
		if len(want) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("README's %s\n%s\nnft-rules prints (IPv4):\n%s", chain, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// chainLines returns the lines of the first chain block that opens with
// header, trimmed and without # notes; ipv4 drops IPv6 lines.
func chainLines(text, header string, ipv4 bool) []string {
	i := strings.Index(text, header)
	if i < 0 {
		return nil
	}
	var out []string
	for _, line := range strings.Split(text[i:], "\n")[1:] {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if line == "}" {
			break
		}
		if ipv4 && (strings.HasPrefix(line, "ip6 ") || strings.Contains(line, "_c6 ")) {
			continue
		}
		out = append(out, line)
	}
	return out
}
