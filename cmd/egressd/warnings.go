package main

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"

	"github.com/egressd/egressd/config"
)

// weakSettings lists settings that let traffic past the firewall, or
// client queries off the host unprotected, for `egressd check`: each is a
// deliberate choice, never a safe default.
func weakSettings(cfg *config.Config) []config.Error {
	var out []config.Error
	warn := func(key, format string, args ...any) {
		out = append(out, config.Error{File: cfg.File, Line: cfg.Line(key), Msg: fmt.Sprintf(format, args...)})
	}
	if cfg.Server.Mode == "audit" {
		warn("server.mode", `server.mode = "audit": denied names are resolved and their addresses approved; nothing is blocked, only logged`)
	}
	for i, g := range cfg.Groups {
		if g.Mode == "audit" {
			warn(fmt.Sprintf("group.%d.mode", i), `group[%s].mode = "audit": denied names are resolved and their addresses approved; nothing is blocked, only logged`, g.Name)
		}
	}
	if cfg.Firewall.FailOpen {
		warn("firewall.fail_open", "firewall.fail_open = true: when the firewall cannot be updated the answer is sent anyway")
	}
	if cfg.Firewall.Fallback {
		warn("firewall.fallback_to_none", `firewall.fallback_to_none = true: without CAP_NET_ADMIN egressd starts with backend "none" and enforces nothing`)
	}
	if d := cfg.Dnstap; d.OutputKind == "tcp" && !loopbackHost(d.OutputTarget) {
		warn("dnstap.output", "dnstap.output = %q: every client's queries and answers leave the host unencrypted and unauthenticated", d.Output)
	}
	if m := cfg.Metrics; m.Profiles && m.Listen != "" && !loopbackHost(m.Listen) {
		warn("metrics.profiles", "metrics.profiles = true on %s: whoever reaches it can read egressd's memory profiles and make it spend CPU on profiles and traces", m.Listen)
	}
	if len(cfg.Server.TrustedProxies) > 0 {
		warn("server.trusted_proxies", "server.trusted_proxies: X-Forwarded-For from %v names the client of a DNS-over-HTTPS query, so a host there can have any client's policy applied and its addresses approved", cfg.Server.TrustedProxies)
	}
	if f := cfg.Fleet; len(f.Enforce) > 0 && f.Credentials == "" && f.TLSCert == "" {
		warn("fleet.enforce", "fleet.enforce without credentials or a client certificate: whoever may publish on %s.approvals.* on the NATS servers decides what this firewall opens (within this node's policy)", f.SubjectPrefix)
	}
	for _, s := range cfg.Fleet.Servers {
		if u, err := url.Parse(s); err == nil && (u.Scheme == "nats" || u.Scheme == "ws") && cfg.Fleet.TLSCA == "" && !loopbackHost(u.Host) {
			warn("fleet.servers", "fleet.servers: %q without tls_ca: approvals (client addresses, names) may cross the network unencrypted unless the server requires TLS", s)
		}
	}
	return out
}

// loopbackHost reports whether HOST:PORT names a loopback address.
func loopbackHost(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
