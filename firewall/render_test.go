package firewall

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.nft golden files")

func TestRenderGolden(t *testing.T) {
	for name, spec := range goldenSpecs {
		t.Run(name, func(t *testing.T) {
			got := Render(spec)
			path := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

func TestRenderInvalidSpecExplains(t *testing.T) {
	got := Render(Spec{Table: "egressd", Hooks: []string{"input"}})
	if !strings.HasPrefix(got, "# ") || !strings.Contains(got, `unknown hook "input"`) {
		t.Errorf("Render of invalid spec = %q", got)
	}
}

func TestRenderModes(t *testing.T) {
	cases := []struct {
		name       string
		spec       string
		contains   []string
		notContain []string
	}{
		{"enforce drops and blocks DNS bypass", "forward",
			[]string{`log prefix "egressd drop servers: "`, "udp dport 53 drop", "tcp dport 853 drop", "udp dport 853 drop", "\t\tdrop\n"},
			[]string{"would_deny", "meta mark", `oifname "lo"`}},
		{"global audit logs and accepts every group", "audit",
			[]string{`"egressd would_deny office: "`, `"egressd would_deny guests_wifi: "`},
			[]string{"egressd drop", "dport 53 drop"}},
		{"group audit only affects that group", "group_audit",
			[]string{`"egressd drop office: "`, `"egressd would_deny trial: "`},
			nil},
		{"output hook passes loopback, egressd's marked upstream sockets and link-scoped IPv6 control", "output",
			[]string{"hook output", `oifname "lo" accept`, "meta skuid 998 meta mark 0x0000002a accept",
				"meta l4proto ipv6-icmp jump ipv6_link\n",
				"chain ipv6_link {\n\t\ticmpv6 type 133-136 ip6 hoplimit 255 ip6 daddr fe80::/10 accept\n",
				"meta skuid != 4294967295 return\n\t\ticmpv6 type 135-136 ip6 hoplimit 255 accept\n\t}",
				"chain prenat_output {\n\t\ttype filter hook output priority mangle;",
				// Inbound services keep answering on the output hook.
				"policy accept;\n\t\tct state established,related accept\n",
				"jump g_host\n\t\tlimit rate 10/second log prefix \"egressd drop unlisted: \"\n\t\tdrop\n\t}"},
			[]string{"hook forward", "hook prerouting", "\t\tip6 daddr fe80::/10 accept", "ct direction"}},
		{"forward hook judges clients' packets in connections opened to them and drops unlisted sources", "forward",
			[]string{"policy accept;\n\t\tct direction original ct state established,related accept\n",
				"jump g_build_farm\n\t\tct state established,related accept\n\t\tlimit rate 10/second log prefix \"egressd drop unlisted: \"\n\t\tdrop\n\t}"},
			[]string{"ipv6_link", "skuid"}},
		{"forward hook accepting inbound connections and unlisted sources", "forward_open",
			[]string{"policy accept;\n\t\tct state established,related accept\n\t\tip saddr @g_office_c4 jump g_office\n\t\tip6 saddr @g_office_c6 jump g_office\n\t}"},
			[]string{"ct direction", "unlisted"}},
		{"global audit only logs unlisted sources", "audit",
			[]string{"jump g_guests_wifi\n\t\tct state established,related accept\n\t\tlimit rate 10/second log prefix \"egressd would_deny unlisted: \"\n\t}"},
			[]string{"drop"}},
		{"forward hook labels approvals before DNAT", "forward",
			[]string{"chain prenat_forward {\n\t\ttype filter hook prerouting priority mangle;",
				"ip saddr @g_servers_c4 ip daddr . meta l4proto . th dport @g_servers_p4 ct label set 23",
				"\t\tct label 23 accept\n\t\tip daddr @g_servers_d4 accept"},
			[]string{"icmpv6 type", "hook output"}},
		{"client scope keys by source and destination", "scope_client",
			[]string{"type ipv4_addr . ipv4_addr\n", "ip saddr . ip daddr @g_lan_d4 accept",
				"type ipv6_addr . ipv6_addr . inet_proto . inet_service",
				"ip6 saddr . ip6 daddr . meta l4proto . th dport @g_lan_p6 accept"},
			nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Render(goldenSpecs[tc.spec])
			for _, s := range tc.contains {
				if !strings.Contains(got, s) {
					t.Errorf("missing %q", s)
				}
			}
			for _, s := range tc.notContain {
				if strings.Contains(got, s) {
					t.Errorf("unexpected %q", s)
				}
			}
		})
	}
}

func TestNftDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Second, "10s"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{1500 * time.Millisecond, "1s500ms"},
		{49*time.Hour + time.Second, "2d1h1s"},
		{0, "0s"},
	} {
		if got := nftDuration(tc.d); got != tc.want {
			t.Errorf("nftDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
