package resolver

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Settings are the options a running Server takes over on reload
// (Configure). A query reads them once, when it is admitted, so it never
// sees half of an old and half of a new configuration.
type Settings struct {
	Clients     []netip.Prefix // who may query; everyone else gets REFUSED
	MaxTTL      time.Duration  // every TTL sent to clients is clamped to this
	FailOpen    bool           // answer even when the firewall push fails
	Hosts       map[string][]netip.Addr
	DoHCanary   bool          // NXDOMAIN for use-application-dns.net, NODATA for _dns.resolver.arpa
	CacheMaxTTL time.Duration // longest time an answer stays cached
	// ServeStale is how long past expiry a cached answer may be served when
	// every upstream fails (RFC 8767); 0 disables it.
	ServeStale time.Duration
	// RateLimit is queries per second per client, RateBurst the bucket
	// size (RateLimit rounded up when 0); RateLimit 0 disables it.
	RateLimit float64
	RateBurst int
	// PrivateAnswers lists the groups that may get private, loopback or
	// unspecified addresses from upstream (rebinding protection off).
	PrivateAnswers map[string]bool
	// TrustedProxies are the sources whose X-Forwarded-For header names
	// the client of a DNS-over-HTTPS query.
	TrustedProxies []netip.Prefix
}

// current is Settings prepared for the request path.
type current struct {
	Settings
	maxTTL  uint32                  // seconds; 0 means no clamp
	hosts   map[string][]netip.Addr // Hosts by normalized name
	reverse reverseHosts            // PTR records from Hosts (localzones.go)
	limiter *rateLimiter            // nil when rate limiting is off
	// ddr is the Server's discovery records (ddr.go), the same pointer in
	// every current.
	ddr *atomic.Pointer[ddrRecords]
}

// Configure makes st the settings of every query admitted after it
// returns; queries already admitted finish with the ones they started
// with. The rate limiter keeps its buckets when rate and burst stay.
func (s *Server) Configure(st Settings) {
	s.configMu.Lock()
	defer s.configMu.Unlock()
	c := &current{Settings: st, maxTTL: seconds(st.MaxTTL), hosts: make(map[string][]netip.Addr, len(st.Hosts))}
	for name, addrs := range st.Hosts {
		key := normalizeName(name)
		c.hosts[key] = append(c.hosts[key], addrs...)
	}
	c.reverse = newReverseHosts(c.hosts)
	c.ddr = &s.enc.ddr
	if prev := s.cur.Load(); prev != nil && prev.RateLimit == st.RateLimit && prev.RateBurst == st.RateBurst {
		c.limiter = prev.limiter
	} else {
		c.limiter = newRateLimiter(st.RateLimit, st.RateBurst, s.clientKeys)
	}
	if s.cache != nil {
		s.cache.setLifetimes(seconds(st.CacheMaxTTL), seconds(st.ServeStale))
	}
	s.cur.Store(c)
}

// settings is the configuration in force, for what is not a query.
func (s *Server) settings() *current { return s.cur.Load() }

// clientAllowed reports whether client is inside the current Clients,
// for what is checked before a query is admitted.
func (s *Server) clientAllowed(client netip.Addr) bool { return s.settings().allows(client) }

func (c *current) allows(client netip.Addr) bool {
	for _, p := range c.Clients {
		if p.Contains(client) {
			return true
		}
	}
	return false
}
