package config

import (
	"net/netip"
	"strings"
	"testing"
)

// The resource limit keys: defaults, accepted values, and file:line
// errors for values out of range.
func TestResourceLimitKeys(t *testing.T) {
	for _, tt := range []struct {
		name  string
		conf  string
		want  string // error fragment; "" means valid
		check func(*Config) bool
	}{
		{"defaults", "", "", func(c *Config) bool {
			return c.Server.RateLimitIPv4Prefix == 32 && c.Server.RateLimitIPv6Prefix == 64 &&
				c.Server.MaxInFlightPerClient == DefaultMaxInFlightPerClient && c.Cache.MaxBytes == 64<<20
		}},
		{"set", "[server]\nrate_limit_ipv4_prefix = 24\nrate_limit_ipv6_prefix = 56\nmax_in_flight_per_client = 8192\n[cache]\nmax_bytes = 1048576\n", "", func(c *Config) bool {
			return c.Server.RateLimitIPv4Prefix == 24 && c.Server.RateLimitIPv6Prefix == 56 &&
				c.Server.MaxInFlightPerClient == 8192 && c.Cache.MaxBytes == 1<<20
		}},
		{"ipv4 prefix too long", "[server]\nrate_limit_ipv4_prefix = 33\n", "bad.toml:2: server.rate_limit_ipv4_prefix: 33 is not a prefix length", nil},
		{"ipv4 prefix negative", "[server]\nrate_limit_ipv4_prefix = -1\n", "bad.toml:2: server.rate_limit_ipv4_prefix: -1 is not a prefix length", nil},
		{"ipv6 prefix too long", "[server]\n\nrate_limit_ipv6_prefix = 129\n", "bad.toml:3: server.rate_limit_ipv6_prefix: 129 is not a prefix length", nil},
		{"in-flight share above the limit", "[server]\nmax_in_flight_per_client = 8193\n", "bad.toml:2: server.max_in_flight_per_client: 8193 is out of range (1 to 8192", nil},
		{"negative cache bytes", "[cache]\nmax_bytes = -1\n", "bad.toml:2: cache.max_bytes must not be negative", nil},
		{"memory limit default", "", "", func(c *Config) bool { return c.Server.MemoryLimit == 0 }},
		{"memory limit set", "[server]\nmemory_limit = 268435456\n", "", func(c *Config) bool { return c.Server.MemoryLimit == 256<<20 }},
		{"memory limit off", "[server]\nmemory_limit = -1\n", "", func(c *Config) bool { return c.Server.MemoryLimit == -1 }},
		{"nat64 prefixes", "[server]\nnat64_prefixes = [\"64:ff9b:1::/48\", \"2001:db8:64::/96\"]\n", "", func(c *Config) bool {
			return len(c.Server.NAT64) == 2 && c.Server.NAT64[1] == netip.MustParsePrefix("2001:db8:64::/96")
		}},
		{"nat64 prefix of a length RFC 6052 lacks", "[server]\nnat64_prefixes = [\"64:ff9b:1::/80\"]\n", "bad.toml:2: server.nat64_prefixes: \"64:ff9b:1::/80\": 64:ff9b:1::/80: a NAT64 prefix is /32, /40, /48, /56, /64 or /96 (RFC 6052)", nil},
		{"nat64 prefix with host bits", "[server]\nnat64_prefixes = [\"64:ff9b:1::5/96\"]\n", "bad.toml:2: server.nat64_prefixes: \"64:ff9b:1::5/96\": 64:ff9b:1::5/96 has host bits set", nil},
		{"nat64 prefix not one", "[server]\nnat64_prefixes = [\"nat64\"]\n", "bad.toml:2: server.nat64_prefixes: \"nat64\": netip.ParsePrefix", nil},
		{"memory limit below -1", "[server]\nmemory_limit = -2\n", "bad.toml:2: server.memory_limit: -2 is neither a size in bytes (at least 16777216), 0 (automatic) nor -1 (off)", nil},
		{"memory limit too small", "[server]\n\nmemory_limit = 1048576\n", "bad.toml:3: server.memory_limit: 1048576 is neither a size in bytes (at least 16777216)", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("bad.toml", []byte(tt.conf))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !tt.check(cfg) {
					t.Errorf("server %+v cache %+v", cfg.Server, cfg.Cache)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted the config, want error %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}
