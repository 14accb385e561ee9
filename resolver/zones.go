package resolver

import (
	"fmt"

	"github.com/miekg/dns"
)

// Zone forwards queries for Name and every name below it to its own
// upstream servers instead of the default ones (conditional forwarding).
// Upstreams take the same forms as Options.Upstreams.
type Zone struct {
	Name      string
	Upstreams []string
}

// upstreamSet is a list of servers tried in order, with the health that
// orders them.
type upstreamSet struct {
	upstreams []Upstream
	health    *upstreamHealth
}

func newUpstreamSet(ups []Upstream) *upstreamSet {
	return &upstreamSet{upstreams: ups, health: newUpstreamHealth(len(ups))}
}

// zoneRoutes maps normalized zone names to their servers.
type zoneRoutes map[string]*upstreamSet

func newZoneRoutes(zones []Zone, b *upstreamBuilder) (zoneRoutes, error) {
	if len(zones) == 0 {
		return nil, nil
	}
	routes := make(zoneRoutes, len(zones))
	for _, z := range zones {
		name := normalizeName(z.Name)
		if _, ok := dns.IsDomainName(name); !ok || name == "." {
			return nil, fmt.Errorf("resolver: zone %q: not a domain name below the root", z.Name)
		}
		if _, dup := routes[name]; dup {
			return nil, fmt.Errorf("resolver: zone %q configured twice", z.Name)
		}
		if len(z.Upstreams) == 0 {
			return nil, fmt.Errorf("resolver: zone %q: no upstream servers", z.Name)
		}
		ups, err := b.list(z.Upstreams)
		if err != nil {
			return nil, fmt.Errorf("resolver: zone %q: %w", z.Name, err)
		}
		routes[name] = newUpstreamSet(ups)
	}
	return routes, nil
}

// match returns the servers of the longest zone that qname (normalized) is
// in or below, or nil when no zone covers it.
func (r zoneRoutes) match(qname string) *upstreamSet {
	if len(r) == 0 {
		return nil
	}
	for off, end := 0, false; !end; off, end = dns.NextLabel(qname, off) {
		if set, ok := r[qname[off:]]; ok {
			return set
		}
	}
	return nil
}
