package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/firewall"
)

// TestCheckWarnsAboutWeakSettings: each setting that lets traffic past
// the firewall is named with its file and line; a config without them
// gets no warning.
func TestCheckWarnsAboutWeakSettings(t *testing.T) {
	const base = `[server]
listen = ["127.0.0.1:5353"]
%SERVER%
[firewall]
backend = "none"
%FIREWALL%
[[group]]
name = "lan"
clients = ["10.0.0.0/8"]
%GROUP%
%EXTRA%
`
	tests := []struct {
		name                  string
		server, firewall, grp string
		extra                 string
		want                  []string
	}{
		{name: "safe settings warn nothing"},
		{name: "server audit", server: `mode = "audit"`,
			want: []string{`:3: warning: server.mode = "audit"`}},
		{name: "group audit", grp: `mode = "audit"`,
			want: []string{`:10: warning: group[lan].mode = "audit"`}},
		{name: "fail open", firewall: `fail_open = true`,
			want: []string{`:6: warning: firewall.fail_open = true`}},
		{name: "fallback to none", firewall: `fallback_to_none = true`,
			want: []string{`:6: warning: firewall.fallback_to_none = true`}},
		{name: "dnstap to another host", extra: "[dnstap]\noutput = \"tcp://192.0.2.10:6000\"",
			want: []string{`:12: warning: dnstap.output = "tcp://192.0.2.10:6000"`}},
		{name: "dnstap on the host", extra: "[dnstap]\noutput = \"tcp://127.0.0.1:6000\""},
		{name: "dnstap to a socket", extra: "[dnstap]\noutput = \"unix:///run/egressd/dnstap.sock\""},
		{name: "trusted proxies", server: `trusted_proxies = ["10.9.0.0/16"]`,
			want: []string{`:3: warning: server.trusted_proxies: X-Forwarded-For from [10.9.0.0/16]`}},
		{name: "fleet agent without credentials", extra: "[fleet]\nservers = [\"nats://127.0.0.1:4222\"]\nenforce = [\"lan\"]",
			want: []string{`:13: warning: fleet.enforce without credentials`}},
		{name: "fleet agent with credentials", extra: "[fleet]\nservers = [\"nats://127.0.0.1:4222\"]\nenforce = [\"lan\"]\ncredentials = \"/etc/egressd/agent.creds\""},
		{name: "fleet plain to another host", extra: "[fleet]\nservers = [\"nats://192.0.2.4:4222\"]",
			want: []string{`:12: warning: fleet.servers: "nats://192.0.2.4:4222" without tls_ca`}},
		{name: "fleet tls to another host", extra: "[fleet]\nservers = [\"tls://192.0.2.4:4222\"]"},
		{name: "profiles on another address", extra: "[metrics]\nlisten = \"192.0.2.7:9153\"\nprofiles = true",
			want: []string{`:13: warning: metrics.profiles = true on 192.0.2.7:9153`}},
		{name: "profiles on loopback", extra: "[metrics]\nlisten = \"127.0.0.1:9153\"\nprofiles = true"},
		{name: "explicit safe values", server: "mode = \"enforce\"\ntrusted_proxies = []", firewall: "fail_open = false\nfallback_to_none = false", grp: `mode = "enforce"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.NewReplacer("%SERVER%", tt.server, "%FIREWALL%", tt.firewall, "%GROUP%", tt.grp, "%EXTRA%", tt.extra).Replace(base)
			conf := writeFile(t, t.TempDir(), "egressd.toml", text)
			var out, errOut bytes.Buffer
			if code := run([]string{"check", "-config", conf}, &out, &errOut); code != 0 {
				t.Fatalf("exit code %d\n%s%s", code, out.String(), errOut.String())
			}
			got := out.String()
			for _, w := range tt.want {
				if !strings.Contains(got, conf+w) {
					t.Errorf("output lacks %q:\n%s", conf+w, got)
				}
			}
			if n := strings.Count(got, ": warning: "); n != len(tt.want) {
				t.Errorf("%d warnings, want %d:\n%s", n, len(tt.want), got)
			}
		})
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestReadinessWhenFirewallFellBack: a daemon whose nftables backend fell
// back to "none" enforces nothing and must not report ready; one
// configured with backend "none" on purpose is not held back by it.
func TestReadinessWhenFirewallFellBack(t *testing.T) {
	orig := canAdminNetwork
	t.Cleanup(func() { canAdminNetwork = orig })
	canAdminNetwork = func() error { return firewall.ErrNoNetAdmin }

	tests := []struct {
		name     string
		firewall string
		wantErr  bool
		problem  string // "" : no firewall problem
	}{
		{name: "fallback", firewall: "backend = \"nftables\"\nfallback_to_none = true", problem: `firewall fell back to backend "none"`},
		{name: "no fallback fails start", firewall: "backend = \"nftables\"\nfallback_to_none = false", wantErr: true},
		{name: "none on purpose", firewall: `backend = "none"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("t.toml", []byte("[firewall]\n"+tt.firewall+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			d := &daemon{logger: quietLogger()}
			err = d.startFirewall(cfg)
			if tt.wantErr {
				if !errors.Is(err, firewall.ErrNoNetAdmin) {
					t.Fatalf("startFirewall = %v, want ErrNoNetAdmin", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var fw []string
			for _, p := range d.readiness() {
				if strings.Contains(p, "firewall") {
					fw = append(fw, p)
				}
			}
			switch {
			case tt.problem == "" && len(fw) > 0:
				t.Errorf("readiness problems %q, want none about the firewall", fw)
			case tt.problem != "" && (len(fw) != 1 || !strings.Contains(fw[0], tt.problem) || !strings.Contains(fw[0], "CAP_NET_ADMIN")):
				t.Errorf("readiness problems %q, want one naming %q and the reason", fw, tt.problem)
			}
		})
	}
}
