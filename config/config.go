// Package config loads and validates egressd's TOML configuration.
package config

import (
	"crypto/tls"
	"net/netip"
	"time"

	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/resolver"
)

// Config is the whole file. Durations are strings in the file ("2s") and
// parsed into the *D fields during validation.
type Config struct {
	Server     Server               `toml:"server"`
	Upstream   Upstream             `toml:"upstream"`
	Cache      Cache                `toml:"cache"`
	Firewall   Firewall             `toml:"firewall"`
	Log        Log                  `toml:"log"`
	Metrics    Metrics              `toml:"metrics"`
	Dnstap     Dnstap               `toml:"dnstap"`
	Fleet      Fleet                `toml:"fleet"`
	Categories map[string]*Category `toml:"categories"`
	Groups     []*Group             `toml:"group"`
	Hosts      map[string][]string  `toml:"hosts"` // name -> addresses, answered locally

	// File is the path the config was read from ("" for the embedded default).
	File string `toml:"-"`
	// HostAddrs is Hosts parsed, keyed by FQDN in lower case.
	HostAddrs map[string][]netip.Addr `toml:"-"`

	pos *positions // key lines, for Line
}

// Line is the line of a key ("firewall.fail_open", "group.0.mode") in the
// file the config was read from, or of its nearest enclosing table; 0 when
// neither is written there.
func (c *Config) Line(key string) int {
	if c.pos == nil {
		return 0
	}
	return c.pos.line(key)
}

type Server struct {
	Listen  []string `toml:"listen"`
	Clients []string `toml:"clients"`
	Mode    string   `toml:"mode"` // enforce | audit
	// RateLimit is queries per second per client; 0 disables it.
	RateLimit      float64 `toml:"rate_limit"`
	RateBurst      int     `toml:"rate_burst"`
	TCPIdleTimeout string  `toml:"tcp_idle_timeout"`
	TCPMaxConns    int     `toml:"tcp_max_conns"`
	TCPMaxPerIP    int     `toml:"tcp_max_conns_per_client"`
	// DoHCanary answers NXDOMAIN for use-application-dns.net (default true).
	DoHCanary *bool `toml:"doh_canary"`
	// StateDir keeps the last good copy of downloaded lists across restarts.
	StateDir string `toml:"state_dir"`

	// A client, for the rate limit and the in-flight share, is an address
	// masked to these lengths (32 and 64 by default).
	RateLimitIPv4Prefix int `toml:"rate_limit_ipv4_prefix"`
	RateLimitIPv6Prefix int `toml:"rate_limit_ipv6_prefix"`
	// MaxInFlightPerClient caps one client's queries waiting for an
	// upstream or the firewall at once, while half the slots are taken.
	MaxInFlightPerClient int `toml:"max_in_flight_per_client"`
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (debug.SetMemoryLimit): 0 takes GOMEMLIMIT or 90% of the cgroup's
	// memory.max when either is set, -1 sets none.
	MemoryLimit int64 `toml:"memory_limit"`

	// Encrypted DNS for clients: DNS over TLS (RFC 7858) and DNS over
	// HTTPS (RFC 8484) addresses, the DoH path, the certificate and key
	// files, and the proxies whose X-Forwarded-For names the client.
	TLSListen      []string `toml:"tls_listen"`
	HTTPSListen    []string `toml:"https_listen"`
	HTTPSPath      string   `toml:"https_path"`
	TLSCert        string   `toml:"tls_cert"`
	TLSKey         string   `toml:"tls_key"`
	TrustedProxies []string `toml:"trusted_proxies"`
	// NAT64Prefixes are the network's own NAT64 prefixes (RFC 6052),
	// besides the well-known 64:ff9b::/96.
	NAT64Prefixes []string `toml:"nat64_prefixes"`

	TCPIdle time.Duration `toml:"-"`
	Audit   bool          `toml:"-"`
	// ClientPrefixes is Clients parsed.
	ClientPrefixes []netip.Prefix `toml:"-"`
	// TrustedProxyPrefixes is TrustedProxies parsed.
	TrustedProxyPrefixes []netip.Prefix `toml:"-"`
	// NAT64 is NAT64Prefixes parsed.
	NAT64 []netip.Prefix `toml:"-"`
	// Certificate is TLSCert and TLSKey loaded, when a TLS or HTTPS
	// listener is configured.
	Certificate *tls.Certificate `toml:"-"`
}

type Upstream struct {
	Servers []string `toml:"servers"`
	Timeout string   `toml:"timeout"`
	// Bootstrap resolves host names in tls:// and https:// servers.
	Bootstrap []string        `toml:"bootstrap"`
	Zones     []*UpstreamZone `toml:"zone"`

	TimeoutDur time.Duration `toml:"-"`
}

// UpstreamZone forwards a domain and everything below it elsewhere.
type UpstreamZone struct {
	Name    string   `toml:"name"`
	Servers []string `toml:"servers"`
}

// Resource limits, owned by the resolver: the defaults for [cache]
// max_bytes and [server] max_in_flight_per_client, and the fixed limit on
// queries in flight for all clients together.
const (
	DefaultCacheMaxBytes        = resolver.DefaultCacheMaxBytes
	DefaultMaxInFlightPerClient = resolver.DefaultMaxInFlightPerClient
	MaxInFlight                 = resolver.MaxInFlight
)

// MinMemoryLimit is the smallest [server] memory_limit accepted: below it
// the collector would run without pause for the server's own structures.
const MinMemoryLimit = 16 << 20

type Cache struct {
	Size   int    `toml:"size"`
	MaxTTL string `toml:"max_ttl"`
	// ServeStale is how long expired answers may be served when every
	// upstream is down (RFC 8767); "0s" disables it.
	ServeStale string `toml:"serve_stale"`
	// MaxBytes bounds the memory the cached answers take.
	MaxBytes int64 `toml:"max_bytes"`

	MaxTTLDur     time.Duration `toml:"-"`
	ServeStaleDur time.Duration `toml:"-"`
}

type Firewall struct {
	Backend  string   `toml:"backend"` // nftables | none
	Table    string   `toml:"table"`
	Hooks    []string `toml:"hooks"` // forward | output
	Grace    string   `toml:"grace"`
	MaxTTL   string   `toml:"max_ttl"`
	Scope    string   `toml:"scope"` // group | client
	FailOpen bool     `toml:"fail_open"`
	// Mark is the SO_MARK put on egressd's own upstream sockets so the
	// output hook lets them pass.
	Mark uint32 `toml:"mark"`
	// RemoveOnExit deletes the table at shutdown (fail open). Default false.
	RemoveOnExit bool `toml:"remove_on_exit"`
	// Inbound decides, on the forward hook, what happens to a grouped
	// client's packets in a connection opened to it from outside: "drop"
	// (default) judges them by its group chain, "accept" lets them pass as
	// established. The output hook always accepts them.
	Inbound string `toml:"inbound"`
	// UnlistedSources is what happens to new traffic from addresses in no
	// group: "drop" (default, logged) or "accept".
	UnlistedSources string `toml:"unlisted_sources"`
	// DropEvents says where drop rules report drops, rate-limited in the
	// kernel: "log" (default, kernel log prefix), "nflog" (NFLOG group
	// NFLOGGroup), "both" or "none".
	DropEvents string `toml:"drop_events"`
	NFLOGGroup int    `toml:"nflog_group"`
	// DropEventsRate and DropEventsBurst bound the drop reports in the
	// kernel, packets a second per chain after a burst (nil: 10 and 5).
	DropEventsRate  *int `toml:"drop_events_rate"`
	DropEventsBurst *int `toml:"drop_events_burst"`
	// RecentAnswers bounds the addresses of recent answers kept to explain
	// drops, RecentAnswersAge how long each is kept.
	RecentAnswers       int           `toml:"recent_answers"`
	RecentAnswersAge    string        `toml:"recent_answers_age"`
	RecentAnswersAgeDur time.Duration `toml:"-"`
	// Fallback lets a missing CAP_NET_ADMIN downgrade to backend none with a
	// warning instead of failing start-up. Set in the embedded default.
	Fallback bool `toml:"fallback_to_none"`
	// MaxAddressesPerAnswer, MaxElementsPerSet and MaxElementsPerClient
	// cap what one answer, all answers together and one client's answers
	// put into the sets; past them the answer is SERVFAIL.
	MaxAddressesPerAnswer int `toml:"max_addresses_per_answer"`
	MaxElementsPerSet     int `toml:"max_elements_per_set"`
	MaxElementsPerClient  int `toml:"max_elements_per_client"`
	// GCInterval is how often the kernel frees the expired elements of
	// the sets egressd fills (nft's gc-interval).
	GCInterval string `toml:"gc_interval"`

	GraceDur      time.Duration `toml:"-"`
	MaxTTLDur     time.Duration `toml:"-"`
	GCIntervalDur time.Duration `toml:"-"`
}

type Log struct {
	Queries string `toml:"queries"` // stdout | none | file path
	// SampleAllowed logs one in N allowed queries (denied ones are not sampled); 0 or 1 logs all.
	SampleAllowed int    `toml:"sample_allowed"`
	Level         string `toml:"level"`
	// MaxSize caps a query log file ("100MB", "64MiB", bytes; "0": no
	// cap); MaxFiles rotated files are kept, 0 drops lines past the cap.
	MaxSize  string `toml:"max_size"`
	MaxFiles *int   `toml:"max_files"`
	// DeniedPerClientRate bounds the lines of one client's queries not
	// allowed, per second; 0 leaves them unbounded.
	DeniedPerClientRate *float64 `toml:"denied_per_client_rate"`

	MaxSizeBytes int64 `toml:"-"`
}

type Metrics struct {
	Listen string `toml:"listen"` // "" disables
	// Profiles serves the Go runtime's profiles under /debug/pprof/ on
	// Listen.
	Profiles bool `toml:"profiles"`
}

// Dnstap is the dnstap output of client and forwarder messages.
type Dnstap struct {
	// Output is unix:///PATH, tcp://HOST:PORT or file:///PATH; "" disables.
	Output   string `toml:"output"`
	Identity string `toml:"identity"` // "" is the host name
	Version  string `toml:"version"`  // "" is "egressd VERSION"
	// Queue bounds the messages waiting for the writer; more are dropped.
	Queue           int   `toml:"queue"`
	ClientQueries   *bool `toml:"client_queries"`
	ClientResponses *bool `toml:"client_responses"`
	Forwarder       *bool `toml:"forwarder"`

	// OutputKind ("unix", "tcp", "file") and OutputTarget (path or
	// HOST:PORT) are Output parsed; OutputKind is "" when disabled.
	OutputKind   string `toml:"-"`
	OutputTarget string `toml:"-"`
}

type Category struct {
	Sources []string `toml:"sources"`
	Refresh string   `toml:"refresh"`
	Match   string   `toml:"match"` // subdomains (default) | exact
	// Format overrides detection: auto (default), domains, hosts, adblock, rpz.
	Format string `toml:"format"`

	RefreshDur time.Duration `toml:"-"`
}

type Group struct {
	Name            string   `toml:"name"`
	Clients         []string `toml:"clients"`
	Allow           []string `toml:"allow"`
	Deny            []string `toml:"deny"`
	AllowCategories []string `toml:"allow_categories"`
	DenyCategories  []string `toml:"deny_categories"`
	Default         string   `toml:"default"` // deny | allow
	Action          string   `toml:"action"`
	Sinkhole        []string `toml:"sinkhole"`
	Mode            string   `toml:"mode"` // "" inherits server.mode
	// AllowPrivate permits answers that put private/loopback addresses
	// behind a name (rebinding protection off for this group).
	AllowPrivate bool `toml:"allow_private_answers"`
	// DenyAddresses are CIDRs (or bare addresses) never approved for the
	// group whatever the name: an answer with one is denied.
	DenyAddresses []string `toml:"deny_addresses"`

	// Spec is the group parsed for the policy engine.
	Spec policy.GroupSpec `toml:"-"`
}
