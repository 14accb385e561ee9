package upstream

import (
	"fmt"

	"github.com/miekg/dns"
)

// Zone forwards queries for Name and every name below it to its own
// upstream servers instead of the default ones (conditional forwarding).
// Upstreams take the same forms as Options.Servers.
type Zone struct {
	Name      string
	Upstreams []string
}

// serverList is a list of servers tried in order, with the health that
// orders them.
type serverList struct {
	upstreams []server
	health    *upstreamHealth
}

func newServerList(ups []server) *serverList {
	return &serverList{upstreams: ups, health: newUpstreamHealth(len(ups))}
}

// zoneRoutes maps normalized zone names to their servers.
type zoneRoutes map[string]*serverList

func newZoneRoutes(zones []Zone, b *upstreamBuilder) (zoneRoutes, error) {
	if len(zones) == 0 {
		return nil, nil
	}
	routes := make(zoneRoutes, len(zones))
	for _, z := range zones {
		name := normalizeName(z.Name)
		if _, ok := dns.IsDomainName(name); !ok || name == "." {
			return nil, fmt.Errorf("zone %q: not a domain name below the root", z.Name)
		}
		if _, dup := routes[name]; dup {
			return nil, fmt.Errorf("zone %q configured twice", z.Name)
		}
		if len(z.Upstreams) == 0 {
			return nil, fmt.Errorf("zone %q: no upstream servers", z.Name)
		}
		ups, err := b.list(z.Upstreams)
		if err != nil {
			return nil, fmt.Errorf("zone %q: %w", z.Name, err)
		}
		routes[name] = newServerList(ups)
	}
	return routes, nil
}

// match returns the servers of the longest zone that qname (normalized) is
// in or below, or nil when no zone covers it.
func (r zoneRoutes) match(qname string) *serverList {
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
