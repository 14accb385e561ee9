package main

import (
	"fmt"
	"net/netip"

	"github.com/egressd/egressd/config"
)

var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

// firewallWarnings names what the nftables table leaves to
// firewall.unlisted_sources or lets through by choice: hooks and address
// families no group covers (loopback counts for nothing: the forward hook
// never sees it and the output hook passes it before any group), and the
// accepting values of unlisted_sources and inbound. `egressd check` prints
// them and the daemon logs them at start and reload.
func firewallWarnings(cfg *config.Config) []string {
	f := cfg.Firewall
	if f.Backend != "nftables" {
		return nil
	}
	var out []string
	if f.UnlistedSources == "accept" {
		out = append(out, `firewall.unlisted_sources = "accept": traffic from addresses in no group passes unfiltered`)
	}
	outcome := `is dropped (firewall.unlisted_sources = "drop")`
	if f.UnlistedSources == "accept" {
		outcome = `passes unfiltered (firewall.unlisted_sources = "accept")`
	}
	var has4, has6 bool
	for _, g := range cfg.Groups {
		for _, p := range g.Spec.Clients {
			switch {
			case p.Addr().Is4() && !(p.Bits() >= loopback4.Bits() && loopback4.Contains(p.Addr())):
				has4 = true
			case p.Addr().Is6() && !(p.Bits() >= loopback6.Bits() && loopback6.Contains(p.Addr())):
				has6 = true
			}
		}
	}
	for _, hook := range f.Hooks {
		for _, fam := range []struct {
			name    string
			covered bool
		}{{"IPv4", has4}, {"IPv6", has6}} {
			if !fam.covered {
				out = append(out, fmt.Sprintf("firewall.hooks: hook %q: no group lists %s clients other than loopback, so %s from every address %s",
					hook, fam.name, fam.name, outcome))
			}
		}
	}
	if f.Inbound == "accept" {
		for _, hook := range f.Hooks {
			if hook == "forward" {
				out = append(out, `firewall.inbound = "accept": on the forward hook a grouped client may answer connections opened to it from any address, approved or not`)
			}
		}
	}
	return out
}
