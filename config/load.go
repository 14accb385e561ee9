package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/miekg/dns"

	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/resolver/upstream"
)

// Error is one problem in a config file, printed as FILE:LINE: message.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Errors is every problem found in one file, in line order.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads and validates the config at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

var tomlLineErr = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: (.*)$`)

// Parse decodes and validates a config. name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	text := string(data)
	pos := scanPositions(text)
	cfg := &Config{}
	md, err := toml.Decode(text, cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Errors{{File: name, Line: pe.Position.Line, Msg: pe.Message}}
		}
		if m := tomlLineErr.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			msg := m[3]
			if m[2] != "" {
				msg = fmt.Sprintf("key %s: %s", m[2], msg)
			}
			return nil, Errors{{File: name, Line: line, Msg: msg}}
		}
		return nil, Errors{{File: name, Msg: err.Error()}}
	}
	cfg.File, cfg.pos = name, pos
	v := &validator{file: name, pos: pos}
	for _, k := range md.Undecoded() {
		v.errAt(pos.firstKeyIn(k[:len(k)-1], k[len(k)-1]), "unknown key %q", k.String())
	}
	applyDefaults(cfg)
	applyFleetDefaults(&cfg.Fleet)
	v.validate(cfg)
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
		return nil, v.errs
	}
	return cfg, nil
}

// defPtr sets a key that may be written as zero (a *T in the config, nil
// when the file leaves it out) to its default d.
func defPtr[T any](p **T, d T) {
	if *p == nil {
		*p = &d
	}
}

func applyDefaults(c *Config) {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	if c.Server.Listen == nil {
		c.Server.Listen = []string{"127.0.0.1:5353"}
	}
	if c.Server.Clients == nil {
		c.Server.Clients = []string{"127.0.0.0/8", "::1/128"}
	}
	def(&c.Server.Mode, "enforce")
	// The TCP defaults are the resolver's own.
	def(&c.Server.TCPIdleTimeout, resolver.DefaultTCPIdleTimeout.String())
	if c.Server.TCPMaxConns == 0 {
		c.Server.TCPMaxConns = resolver.DefaultTCPMaxConns
	}
	if c.Server.TCPMaxPerIP == 0 {
		c.Server.TCPMaxPerIP = resolver.DefaultTCPMaxConnsPerClient
	}
	if c.Server.RateLimitIPv4Prefix == 0 {
		c.Server.RateLimitIPv4Prefix = 32
	}
	if c.Server.RateLimitIPv6Prefix == 0 {
		c.Server.RateLimitIPv6Prefix = 64
	}
	if c.Server.MaxInFlightPerClient == 0 {
		c.Server.MaxInFlightPerClient = DefaultMaxInFlightPerClient
	}
	def(&c.Server.HTTPSPath, "/dns-query")
	defPtr(&c.Server.DoHCanary, true)
	def(&c.Upstream.Timeout, "2s")
	if c.Cache.Size == 0 {
		c.Cache.Size = 100000
	}
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = DefaultCacheMaxBytes
	}
	def(&c.Cache.MaxTTL, "1h")
	def(&c.Cache.ServeStale, "0s")
	def(&c.Firewall.Backend, "nftables")
	def(&c.Firewall.Table, "egressd")
	if c.Firewall.Hooks == nil {
		c.Firewall.Hooks = []string{"forward"}
	}
	def(&c.Firewall.Grace, "30s")
	def(&c.Firewall.GCInterval, "10s")
	def(&c.Firewall.MaxTTL, "5m")
	def(&c.Firewall.Scope, "group")
	if c.Firewall.Mark == 0 {
		c.Firewall.Mark = 0x4547 // "EG"
	}
	if c.Firewall.MaxAddressesPerAnswer == 0 {
		c.Firewall.MaxAddressesPerAnswer = 64 // firewall.DefaultMaxAddressesPerAnswer
	}
	if c.Firewall.MaxElementsPerSet == 0 {
		c.Firewall.MaxElementsPerSet = 65536 // firewall.DefaultMaxElementsPerSet
	}
	if c.Firewall.MaxElementsPerClient == 0 {
		// firewall.DefaultMaxElementsPerClient, or the whole set if smaller.
		c.Firewall.MaxElementsPerClient = min(8192, c.Firewall.MaxElementsPerSet)
	}
	def(&c.Firewall.Inbound, "drop")
	def(&c.Firewall.UnlistedSources, "drop")
	def(&c.Firewall.DropEvents, "log")
	def(&c.Firewall.RecentAnswersAge, "1h")
	defPtr(&c.Firewall.DropEventsRate, 10)
	defPtr(&c.Firewall.DropEventsBurst, 5)
	if c.Firewall.RecentAnswers == 0 {
		c.Firewall.RecentAnswers = 100000
	}
	def(&c.Log.Queries, "stdout")
	def(&c.Log.Level, "info")
	def(&c.Log.MaxSize, "100MB")
	defPtr(&c.Log.MaxFiles, 3)
	defPtr(&c.Log.DeniedPerClientRate, 50.0)
	if c.Dnstap.Queue == 0 {
		c.Dnstap.Queue = 10000 // dnstap.DefaultQueue
	}
	for _, b := range []**bool{&c.Dnstap.ClientQueries, &c.Dnstap.ClientResponses, &c.Dnstap.Forwarder} {
		defPtr(b, true)
	}
	for _, cat := range c.Categories {
		def(&cat.Refresh, "24h")
		def(&cat.Match, "subdomains")
		def(&cat.Format, "auto")
	}
	for _, g := range c.Groups {
		def(&g.Default, "deny")
		def(&g.Action, "nxdomain")
	}
}

type validator struct {
	file string
	pos  *positions
	errs Errors
}

func (v *validator) errAt(line int, format string, args ...any) {
	v.errs = append(v.errs, Error{File: v.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) err(key, format string, args ...any) {
	v.errAt(v.pos.line(key), format, args...)
}

func (v *validator) errValue(key, value, format string, args ...any) {
	v.errAt(v.pos.valueLine(key, value), format, args...)
}

func (v *validator) duration(key, s string, min time.Duration) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		v.err(key, "%s: invalid duration %q (use e.g. \"30s\", \"5m\", \"24h\")", key, s)
		return 0
	}
	if d < min {
		v.err(key, "%s: duration %q must be at least %s", key, s, min)
	}
	return d
}

func (v *validator) oneOf(key, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.err(key, "%s: invalid value %q (one of %s)", key, s, strings.Join(allowed, ", "))
}

func (v *validator) prefixes(key string, list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			v.errValue(key, s, "%s: invalid CIDR %q", key, s)
			continue
		}
		out = append(out, p)
	}
	return out
}

// ParsePrefix accepts a CIDR or a bare address (a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (v *validator) addrPort(key, s string) {
	if _, err := netip.ParseAddrPort(s); err != nil {
		v.errValue(key, s, "%s: invalid address %q (want IP:PORT, e.g. \"127.0.0.1:5353\" or \"[::1]:53\")", key, s)
	}
}

// upstream checks one server address in the resolver's grammar.
func (v *validator) upstream(key, s string) {
	if _, err := upstream.ParseAddr(s); err != nil {
		v.errValue(key, s, "%s: invalid upstream %q (want %s)", key, s, upstream.Syntax)
	}
}

func validName(s string) bool {
	if s == "" || s == "." {
		return false
	}
	_, ok := dns.IsDomainName(s)
	return ok && !strings.ContainsAny(s, " \t*")
}

// maxDnstapQueue bounds dnstap.queue: a queued message holds a copy of
// a DNS message (up to 64 KiB over TCP, mostly a few hundred bytes).
const maxDnstapQueue = 1 << 20

func (v *validator) dnstap(d *Dnstap) {
	if d.Output != "" {
		kind, target, err := ParseDnstapOutput(d.Output)
		if err != nil {
			v.err("dnstap.output", "dnstap.output: %v", err)
		}
		d.OutputKind, d.OutputTarget = kind, target
	}
	if d.Queue < 1 || d.Queue > maxDnstapQueue {
		v.err("dnstap.queue", "dnstap.queue: %d is out of range (1 to %d)", d.Queue, maxDnstapQueue)
	}
}

// DnstapOutputSyntax is the accepted forms of dnstap.output.
const DnstapOutputSyntax = "unix:///PATH, tcp://HOST:PORT or file:///PATH"

// ParseDnstapOutput splits a dnstap.output value into its kind ("unix",
// "tcp", "file") and its target (an absolute path, or HOST:PORT).
func ParseDnstapOutput(s string) (kind, target string, err error) {
	kind, target, ok := strings.Cut(s, "://")
	bad := fmt.Errorf("invalid output %q (want %s)", s, DnstapOutputSyntax)
	if !ok {
		return "", "", bad
	}
	switch kind {
	case "unix", "file":
		if !strings.HasPrefix(target, "/") || target == "/" {
			return "", "", bad
		}
	case "tcp":
		if _, port, err := net.SplitHostPort(target); err != nil || port == "" {
			return "", "", bad
		}
	default:
		return "", "", bad
	}
	return kind, target, nil
}

// maxElementsPerSet is the largest firewall.max_elements_per_set: a
// reload re-adds every live element in one netlink batch.
const maxElementsPerSet = 1 << 20

func (v *validator) validate(c *Config) {
	s := &c.Server
	if len(s.Listen) == 0 {
		v.err("server.listen", "server.listen: at least one address is needed")
	}
	for _, l := range s.Listen {
		v.addrPort("server.listen", l)
	}
	s.ClientPrefixes = v.prefixes("server.clients", s.Clients)
	v.oneOf("server.mode", s.Mode, "enforce", "audit")
	s.Audit = s.Mode == "audit"
	s.TCPIdle = v.duration("server.tcp_idle_timeout", s.TCPIdleTimeout, time.Millisecond)
	if s.RateLimit < 0 || s.RateBurst < 0 || s.TCPMaxConns < 0 || s.TCPMaxPerIP < 0 {
		v.err("server", "server: rate_limit, rate_burst and tcp limits must not be negative")
	}
	if s.RateLimitIPv4Prefix < 0 || s.RateLimitIPv4Prefix > 32 {
		v.err("server.rate_limit_ipv4_prefix", "server.rate_limit_ipv4_prefix: %d is not a prefix length (1 to 32)", s.RateLimitIPv4Prefix)
	}
	if s.RateLimitIPv6Prefix < 0 || s.RateLimitIPv6Prefix > 128 {
		v.err("server.rate_limit_ipv6_prefix", "server.rate_limit_ipv6_prefix: %d is not a prefix length (1 to 128)", s.RateLimitIPv6Prefix)
	}
	if s.MaxInFlightPerClient < 0 || s.MaxInFlightPerClient > MaxInFlight {
		v.err("server.max_in_flight_per_client", "server.max_in_flight_per_client: %d is out of range (1 to %d, the limit for all clients)", s.MaxInFlightPerClient, MaxInFlight)
	}

	if s.MemoryLimit < -1 || (s.MemoryLimit > 0 && s.MemoryLimit < MinMemoryLimit) {
		v.err("server.memory_limit", "server.memory_limit: %d is neither a size in bytes (at least %d), 0 (automatic) nor -1 (off)", s.MemoryLimit, MinMemoryLimit)
	}

	v.encrypted(s)
	for _, str := range s.NAT64Prefixes {
		p, err := netip.ParsePrefix(str)
		if err == nil {
			err = policy.CheckNAT64Prefix(p)
		}
		if err != nil {
			v.errValue("server.nat64_prefixes", str, "server.nat64_prefixes: %q: %v", str, err)
			continue
		}
		s.NAT64 = append(s.NAT64, p)
	}

	u := &c.Upstream
	for _, srv := range u.Servers {
		v.upstream("upstream.servers", srv)
	}
	for _, b := range u.Bootstrap {
		if _, err := netip.ParseAddrPort(b); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(b); err == nil {
			continue
		}
		v.errValue("upstream.bootstrap", b, "upstream.bootstrap: invalid server %q (want a plain DNS IP[:PORT])", b)
	}
	u.TimeoutDur = v.duration("upstream.timeout", u.Timeout, time.Millisecond)
	for i, z := range u.Zones {
		key := fmt.Sprintf("upstream.zone.%d", i)
		if !validName(z.Name) {
			v.err(key+".name", "upstream.zone: invalid zone name %q", z.Name)
		}
		if len(z.Servers) == 0 {
			v.err(key, "upstream.zone %q: servers must not be empty", z.Name)
		}
		for _, srv := range z.Servers {
			v.upstream(key+".servers", srv)
		}
	}

	if c.Cache.Size < 0 {
		v.err("cache.size", "cache.size must not be negative")
	}
	if c.Cache.MaxBytes < 0 {
		v.err("cache.max_bytes", "cache.max_bytes must not be negative")
	}
	c.Cache.MaxTTLDur = v.duration("cache.max_ttl", c.Cache.MaxTTL, time.Second)
	c.Cache.ServeStaleDur = v.duration("cache.serve_stale", c.Cache.ServeStale, 0)

	f := &c.Firewall
	v.oneOf("firewall.backend", f.Backend, "nftables", "none")
	if err := firewall.CheckTableName(f.Table); err != nil {
		v.err("firewall.table", "firewall.table: %v", err)
	}
	if len(f.Hooks) == 0 {
		v.err("firewall.hooks", "firewall.hooks: at least one of \"forward\", \"output\" is needed")
	}
	for _, h := range f.Hooks {
		if h != "forward" && h != "output" {
			v.errValue("firewall.hooks", h, "firewall.hooks: invalid hook %q (one of forward, output)", h)
		}
	}
	f.GraceDur = v.duration("firewall.grace", f.Grace, 0)
	f.MaxTTLDur = v.duration("firewall.max_ttl", f.MaxTTL, time.Second)
	f.GCIntervalDur = v.duration("firewall.gc_interval", f.GCInterval, time.Second)
	if f.GCIntervalDur > firewall.MaxSetGCInterval {
		v.err("firewall.gc_interval", "firewall.gc_interval: duration %q must be at most %s", f.GCInterval, firewall.MaxSetGCInterval)
	}
	v.oneOf("firewall.scope", f.Scope, "group", "client")
	if f.MaxElementsPerSet < 1 || f.MaxElementsPerSet > maxElementsPerSet {
		v.err("firewall.max_elements_per_set", "firewall.max_elements_per_set: %d is out of range (1 to %d)", f.MaxElementsPerSet, maxElementsPerSet)
	} else {
		if f.MaxAddressesPerAnswer < 1 || f.MaxAddressesPerAnswer > f.MaxElementsPerSet {
			v.err("firewall.max_addresses_per_answer", "firewall.max_addresses_per_answer: %d is out of range (1 to max_elements_per_set, %d)", f.MaxAddressesPerAnswer, f.MaxElementsPerSet)
		}
		if f.MaxElementsPerClient < 1 || f.MaxElementsPerClient > f.MaxElementsPerSet {
			v.err("firewall.max_elements_per_client", "firewall.max_elements_per_client: %d is out of range (1 to max_elements_per_set, %d)", f.MaxElementsPerClient, f.MaxElementsPerSet)
		}
	}
	v.oneOf("firewall.inbound", f.Inbound, "drop", "accept")
	v.oneOf("firewall.unlisted_sources", f.UnlistedSources, "drop", "accept")
	v.oneOf("firewall.drop_events", f.DropEvents, "log", "nflog", "both", "none")
	if f.NFLOGGroup < 0 || f.NFLOGGroup > 65535 {
		v.err("firewall.nflog_group", "firewall.nflog_group: %d is out of range (0 to 65535)", f.NFLOGGroup)
	}
	for _, r := range []struct {
		key string
		n   *int
	}{{"firewall.drop_events_rate", f.DropEventsRate}, {"firewall.drop_events_burst", f.DropEventsBurst}} {
		if r.n != nil && (*r.n < 1 || *r.n > 1000000) {
			v.err(r.key, "%s: %d is out of range (1 to 1000000)", r.key, *r.n)
		}
	}
	if f.RecentAnswers < 1 || f.RecentAnswers > 10000000 {
		v.err("firewall.recent_answers", "firewall.recent_answers: %d is out of range (1 to 10000000)", f.RecentAnswers)
	}
	f.RecentAnswersAgeDur = v.duration("firewall.recent_answers_age", f.RecentAnswersAge, time.Second)

	if c.Log.SampleAllowed < 0 {
		v.err("log.sample_allowed", "log.sample_allowed must not be negative")
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	c.Log.MaxSizeBytes = v.byteSize("log.max_size", c.Log.MaxSize, minLogSize)
	if n := *c.Log.MaxFiles; n < 0 || n > maxLogFiles {
		v.err("log.max_files", "log.max_files must be between 0 and %d", maxLogFiles)
	}
	if *c.Log.DeniedPerClientRate < 0 {
		v.err("log.denied_per_client_rate", "log.denied_per_client_rate must not be negative")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			v.err("metrics.listen", "metrics.listen: invalid address %q (want HOST:PORT)", c.Metrics.Listen)
		}
	}

	v.dnstap(&c.Dnstap)

	for name, cat := range c.Categories {
		key := "categories." + name
		if len(cat.Sources) == 0 {
			v.err(key+".sources", "%s: sources must not be empty", key)
		}
		cat.RefreshDur = v.duration(key+".refresh", cat.Refresh, time.Minute)
		v.oneOf(key+".match", cat.Match, "subdomains", "exact")
		v.oneOf(key+".format", cat.Format, "auto", "domains", "hosts", "adblock", "rpz")
	}
	if len(c.Categories) > 64 {
		v.err("categories", "at most 64 categories are supported, found %d", len(c.Categories))
	}

	c.HostAddrs = map[string][]netip.Addr{}
	for name, addrs := range c.Hosts {
		key := "hosts." + name
		if !validName(name) {
			v.err(key, "hosts: invalid name %q", name)
			continue
		}
		fq := strings.ToLower(dns.Fqdn(name))
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				v.errValue(key, a, "hosts.%s: invalid address %q", name, a)
				continue
			}
			c.HostAddrs[fq] = append(c.HostAddrs[fq], ip.Unmap())
		}
	}

	v.groups(c)
	v.fleet(c)
}

func (v *validator) groups(c *Config) {
	seen := map[string]int{}
	owner := map[netip.Prefix]string{}
	for i, g := range c.Groups {
		key := fmt.Sprintf("group.%d", i)
		label := fmt.Sprintf("group[%s]", g.Name)
		if g.Name == "" {
			v.err(key, "group #%d: name is required", i+1)
			label = fmt.Sprintf("group #%d", i+1)
		} else if prev, dup := seen[g.Name]; dup {
			v.err(key+".name", "%s: duplicate group name (first defined at line %d)", label, v.pos.line(fmt.Sprintf("group.%d", prev)))
		} else {
			seen[g.Name] = i
		}
		spec := policy.GroupSpec{Name: g.Name}
		if len(g.Clients) == 0 {
			v.err(key, "%s: clients must not be empty", label)
		}
		spec.Clients = v.prefixes(key+".clients", g.Clients)
		for _, p := range spec.Clients {
			if other, dup := owner[p]; dup && other != g.Name {
				v.errValue(key+".clients", p.String(), "%s: client range %s is already in group %q (overlapping groups need different prefix lengths)", label, p, other)
			}
			owner[p] = g.Name
		}
		for _, field := range []struct {
			name  string
			rules []string
		}{{"allow", g.Allow}, {"deny", g.Deny}} {
			for _, r := range field.rules {
				rule, err := policy.ParseRule(r)
				if err != nil {
					v.errValue(key+"."+field.name, r, "%s.%s: %v", label, field.name, err)
				} else if field.name == "deny" && len(rule.Ports) > 0 {
					v.errValue(key+".deny", r, "%s.deny: rule %q has a port; deny rules apply to the whole name (scope allow rules with ports instead)", label, r)
				} else if field.name == "allow" && rule.Wildcard && isPublicSuffix(rule.Name) {
					v.errValue(key+".allow", r, "%s.allow: rule %q allows every name under the public suffix %q; list the registrable domains instead", label, rule.Text, strings.TrimSuffix(rule.Name, "."))
				}
			}
		}
		spec.Allow, spec.Deny = g.Allow, g.Deny
		for _, field := range []struct {
			name string
			cats []string
		}{{"allow_categories", g.AllowCategories}, {"deny_categories", g.DenyCategories}} {
			for _, cat := range field.cats {
				if _, ok := c.Categories[cat]; !ok {
					v.errValue(key+"."+field.name, cat, "%s.%s: unknown category %q (define [categories.%s])", label, field.name, cat, cat)
				}
			}
		}
		spec.AllowCategories, spec.DenyCategories = g.AllowCategories, g.DenyCategories
		v.oneOf(key+".default", g.Default, "deny", "allow")
		spec.DefaultAllow = g.Default == "allow"
		if a, ok := policy.ParseAction(g.Action); ok {
			spec.Action = a
		} else {
			v.err(key+".action", "%s.action: invalid value %q (one of nxdomain, nodata, refused, sinkhole)", label, g.Action)
		}
		for _, s := range g.Sinkhole {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				v.errValue(key+".sinkhole", s, "%s.sinkhole: invalid address %q", label, s)
				continue
			}
			spec.Sinkhole = append(spec.Sinkhole, ip.Unmap())
		}
		spec.DenyAddresses = v.prefixes(key+".deny_addresses", g.DenyAddresses)
		if spec.Action == policy.ActionSinkhole && len(spec.Sinkhole) == 0 {
			v.err(key+".action", "%s: action \"sinkhole\" needs sinkhole addresses", label)
		}
		switch g.Mode {
		case "":
			if c.Server.Audit {
				spec.Mode = policy.ModeAudit
			}
		case "enforce":
		case "audit":
			spec.Mode = policy.ModeAudit
		default:
			v.err(key+".mode", "%s.mode: invalid value %q (one of enforce, audit)", label, g.Mode)
		}
		g.Spec = spec
	}
}

// PolicyGroups returns the parsed groups for policy.Compile.
func (c *Config) PolicyGroups() []policy.GroupSpec {
	out := make([]policy.GroupSpec, len(c.Groups))
	for i, g := range c.Groups {
		out[i] = g.Spec
	}
	return out
}
