package main

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/internal/testfile"
	"github.com/egressd/egressd/policy"
)

func TestWorkloads(t *testing.T) {
	w := workload{hot: 10, cold: 500, mixedLines: 1000, coldShare: 0.1, seed: 7}
	hit, miss := w.hitQueries(), w.missQueries()
	if len(hit) != 10 || slices.Max(hit) != 9 {
		t.Errorf("hit = %v, want h0..h9", hit)
	}
	if len(miss) != 500 || slices.Min(miss) != 10 || slices.Max(miss) != 509 {
		t.Errorf("miss spans %d..%d (%d names), want 10..509", slices.Min(miss), slices.Max(miss), len(miss))
	}
	mixed := w.mixedQueries()
	if len(mixed) != 1000 {
		t.Fatalf("mixed has %d lines, want 1000", len(mixed))
	}
	seenCold := map[int]bool{}
	for _, n := range mixed {
		if n < 0 || n >= w.hot+w.cold {
			t.Fatalf("mixed name h%d outside the zone", n)
		}
		if n >= w.hot {
			if seenCold[n] {
				t.Errorf("cold name h%d repeated", n)
			}
			seenCold[n] = true
		}
	}
	if len(seenCold) != 100 {
		t.Errorf("mixed has %d cold lines, want 100", len(seenCold))
	}
	if again := w.mixedQueries(); !slices.Equal(again, mixed) {
		t.Error("mixed order differs for the same seed")
	}
	if sorted := slices.Sorted(slices.Values(mixed)); slices.Equal(sorted, mixed) {
		t.Error("mixed queries are not shuffled")
	}
}

func TestGenerateFiles(t *testing.T) {
	dir := t.TempDir()
	w := workload{hot: 5, cold: 20, mixedLines: 50, coldShare: 0.1, seed: 1}
	if err := generate(dir, w, 3, configOptions{listen: "127.0.0.1:5401", upstream: "127.0.0.2:5300", cache: 1000}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file  string
		lines int
		first string
	}{
		{"queries-hit.txt", 5, "h0.bench.test A"},
		{"queries-miss.txt", 20, "h5.bench.test A"},
		{"queries-mixed.txt", 50, ""},
		{"blocked.txt", 4, "# generated benchmark category: 3 domains"},
	}
	for _, tc := range tests {
		lines := testfile.Lines(t, filepath.Join(dir, tc.file))
		if len(lines) != tc.lines {
			t.Errorf("%s: %d lines, want %d", tc.file, len(lines), tc.lines)
		}
		if tc.first != "" && (len(lines) == 0 || lines[0] != tc.first) {
			t.Errorf("%s: lines %q, want the first to be %q", tc.file, lines, tc.first)
		}
	}
	if last := testfile.Lines(t, filepath.Join(dir, "blocked.txt"))[3]; last != "d2.blocked.test" {
		t.Errorf("last blocked domain %q, want d2.blocked.test", last)
	}
	for file, backend := range map[string]string{"egressd.toml": "none", "egressd-nft.toml": "nftables"} {
		cfg, err := config.Load(filepath.Join(dir, file))
		if err != nil {
			t.Fatalf("%s does not load: %v", file, err)
		}
		if cfg.Firewall.Backend != backend || cfg.Log.Queries != "none" || cfg.Upstream.Servers[0] != "127.0.0.2:5300" {
			t.Errorf("%s: backend %q, log %q, upstream %v", file, cfg.Firewall.Backend, cfg.Log.Queries, cfg.Upstream.Servers)
		}
		if src := cfg.Categories["blocked"].Sources; len(src) != 1 || src[0] != filepath.Join(dir, "blocked.txt") {
			t.Errorf("%s: blocked category sources %v", file, src)
		}
	}
}

// blockedMatcher stands in for the category list: bit 0 for the names
// writeBlocked generates and everything below them.
type blockedMatcher struct{}

func (blockedMatcher) Match(qname string) uint64 {
	if strings.HasSuffix(qname, ".blocked.test.") {
		return 1
	}
	return 0
}

func TestPolicyAllowsBenchmarkNames(t *testing.T) {
	var text strings.Builder
	if err := writeConfig(&text, configOptions{listen: "127.0.0.1:5401", upstream: "127.0.0.2:5300", backend: "none", blocked: "/nonexistent/blocked.txt", cache: 1}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("bench.toml", []byte(text.String()))
	if err != nil {
		t.Fatalf("generated config is invalid: %v", err)
	}
	rules := 0
	for _, g := range cfg.Groups {
		rules += len(g.Allow) + len(g.Deny)
	}
	if len(cfg.Groups) != 3 || rules < 200 || rules > 999 {
		t.Errorf("%d groups with %d rules, want 3 groups with a few hundred", len(cfg.Groups), rules)
	}
	engine, err := policy.Compile(cfg.PolicyGroups(), map[string]int{"blocked": 0}, blockedMatcher{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		client string
		name   string
		want   policy.Verdict
	}{
		{"127.0.0.1", "h0.bench.test.", policy.Allow},
		{"127.0.0.1", "h100999.bench.test.", policy.Allow},
		{"::1", "h5.bench.test.", policy.Allow},
		{"127.0.0.1", "x0.bench.test.", policy.Deny},
		{"127.0.0.1", "a.stage1.bench.test.", policy.Deny},
		{"127.0.0.1", "d123.blocked.test.", policy.Deny},
		{"127.0.0.1", "unlisted.example.", policy.Deny},
		{"10.10.1.1", "h0.bench.test.", policy.Deny},
		{"10.10.1.1", "pkg0.mirror.test.", policy.Allow},
		{"10.20.0.9", "app0.saas.test.", policy.Allow},
	}
	for _, tc := range tests {
		d := engine.Decide(netip.MustParseAddr(tc.client), tc.name, dns.TypeA)
		if d.Verdict != tc.want {
			t.Errorf("%s asking %s: %v (group %q, rule %q), want %v", tc.client, tc.name, d.Verdict, d.Group, d.Rule, tc.want)
		}
	}
}

// The cache budget in bytes is written for every config (unbound gets the
// same total in compare), the memory limit only when one is asked for.
func TestConfigCacheBudgetAndMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		name        string
		cacheBytes  int64
		memoryLimit int64
	}{
		{"budget only", 8 << 20, 0},
		{"with a memory limit", 8 << 20, 48 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var text strings.Builder
			o := configOptions{listen: "127.0.0.1:5401", upstream: "127.0.0.2:5300", backend: "none",
				blocked: "/nonexistent/blocked.txt", cache: 100000, cacheBytes: tt.cacheBytes, memoryLimit: tt.memoryLimit}
			if err := writeConfig(&text, o); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse("bench.toml", []byte(text.String()))
			if err != nil {
				t.Fatalf("generated config is invalid: %v", err)
			}
			if cfg.Cache.MaxBytes != tt.cacheBytes || cfg.Server.MemoryLimit != tt.memoryLimit {
				t.Errorf("cache.max_bytes %d, server.memory_limit %d; want %d, %d",
					cfg.Cache.MaxBytes, cfg.Server.MemoryLimit, tt.cacheBytes, tt.memoryLimit)
			}
		})
	}
}
