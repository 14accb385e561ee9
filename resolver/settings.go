package resolver

import (
	"net/netip"
	"time"
)

// Settings are the options a running Server takes over on reload
// (Server.Configure): each query reads one Settings value, so it never
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
	// TCPIdleTimeout closes a TCP connection that sends no query for that
	// long (0: 10 s).
	TCPIdleTimeout time.Duration
	// PrivateAnswers lists the groups that may get private, loopback or
	// unspecified addresses from upstream (rebinding protection off).
	PrivateAnswers map[string]bool
}
