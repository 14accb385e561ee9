package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/egressd/egressd/config"
)

func TestFirewallWarnings(t *testing.T) {
	const head = "[server]\nlisten = [\"127.0.0.1:5353\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n"
	tests := []struct {
		name     string
		conf     string
		want     []string // each a substring of one warning, in order
		wantNone bool
	}{
		{"both families covered on the forward hook",
			"[[group]]\nname = \"lan\"\nclients = [\"10.0.0.0/8\", \"fd00::/8\"]\n",
			nil, true},
		{"IPv4-only groups leave IPv6 to unlisted_sources",
			"[[group]]\nname = \"lan\"\nclients = [\"10.0.0.0/8\"]\n",
			[]string{`hook "forward": no group lists IPv6 clients other than loopback, so IPv6 from every address is dropped (firewall.unlisted_sources = "drop")`}, false},
		{"loopback-only group on the output hook filters nothing",
			"[firewall]\nhooks = [\"output\"]\nunlisted_sources = \"accept\"\n[[group]]\nname = \"local\"\nclients = [\"127.0.0.0/8\", \"::1/128\"]\n",
			[]string{
				`firewall.unlisted_sources = "accept": traffic from addresses in no group passes unfiltered`,
				`hook "output": no group lists IPv4 clients other than loopback, so IPv4 from every address passes unfiltered (firewall.unlisted_sources = "accept")`,
				`hook "output": no group lists IPv6 clients other than loopback, so IPv6 from every address passes unfiltered`,
			}, false},
		{"inbound accepted on the forward hook",
			"[firewall]\ninbound = \"accept\"\n[[group]]\nname = \"lan\"\nclients = [\"10.0.0.0/8\", \"fd00::/8\"]\n",
			[]string{`firewall.inbound = "accept": on the forward hook a grouped client may answer connections opened to it from any address`}, false},
		{"inbound is no matter on the output hook",
			"[firewall]\nhooks = [\"output\"]\ninbound = \"accept\"\n[[group]]\nname = \"host\"\nclients = [\"0.0.0.0/0\", \"::/0\"]\n",
			nil, true},
		{"backend none enforces nothing to warn about here",
			"[firewall]\nbackend = \"none\"\n[[group]]\nname = \"lan\"\nclients = [\"10.0.0.0/8\"]\n",
			nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("w.toml", []byte(head+tt.conf))
			if err != nil {
				t.Fatal(err)
			}
			got := firewallWarnings(cfg)
			if tt.wantNone && len(got) != 0 {
				t.Fatalf("warnings %q, want none", got)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestCheckWarnsAboutUncoveredFamily(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "egressd.toml", strings.Replace(testConfig, `backend = "none"`, `backend = "nftables"`, 1))
	writeFile(t, dir, "malware.txt", testList)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "-config", conf}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	want := conf + `: warning: firewall.hooks: hook "forward": no group lists IPv6 clients`
	if !strings.Contains(out.String(), want) {
		t.Errorf("check output:\n%s\nwant a line starting %q", out.String(), want)
	}
}

func TestFirewallSpecCarriesRuleChoices(t *testing.T) {
	const head = "[server]\nlisten = [\"127.0.0.1:5353\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n[firewall]\nmark = 99\n"
	for _, tt := range []struct {
		conf              string
		inbound, unlisted bool
	}{
		{"", false, false},
		{"inbound = \"accept\"\n", true, false},
		{"unlisted_sources = \"accept\"\n", false, true},
	} {
		cfg, err := config.Parse("s.toml", []byte(head+tt.conf))
		if err != nil {
			t.Fatal(err)
		}
		spec := firewallSpec(cfg, cfg)
		if spec.AcceptInbound != tt.inbound || spec.AcceptUnlisted != tt.unlisted {
			t.Errorf("%q: AcceptInbound %v AcceptUnlisted %v, want %v %v", tt.conf, spec.AcceptInbound, spec.AcceptUnlisted, tt.inbound, tt.unlisted)
		}
		if spec.Mark != 99 || spec.UID != uint32(os.Geteuid()) {
			t.Errorf("%q: mark %d uid %d, want 99 and this process's uid %d", tt.conf, spec.Mark, spec.UID, os.Geteuid())
		}
	}
}
