package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/blocklists"
	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/configs"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/resolver/upstream"
)

// loadConfig reads path, or the embedded default when path is empty.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(configs.DefaultName, configs.Default)
	}
	return config.Load(path)
}

// baseDir is where relative list paths in cfg are resolved.
func baseDir(cfg *config.Config, path string) string {
	if path == "" {
		wd, _ := os.Getwd()
		return wd
	}
	return filepath.Dir(path)
}

// stateDir is where downloaded lists are kept between restarts.
func stateDir(cfg *config.Config) string {
	if cfg.Server.StateDir != "" {
		return cfg.Server.StateDir
	}
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return strings.Split(d, ":")[0]
	}
	if os.Geteuid() == 0 {
		return "/var/lib/egressd"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "egressd")
	}
	return filepath.Join(os.TempDir(), "egressd")
}

func categorySpecs(cfg *config.Config) []blocklists.CategorySpec {
	names := make([]string, 0, len(cfg.Categories))
	for n := range cfg.Categories {
		names = append(names, n)
	}
	sort.Strings(names)
	specs := make([]blocklists.CategorySpec, 0, len(names))
	for _, n := range names {
		c := cfg.Categories[n]
		specs = append(specs, blocklists.CategorySpec{Name: n, Sources: c.Sources, Refresh: c.RefreshDur, Match: c.Match, Format: c.Format})
	}
	return specs
}

// loadLists builds and loads the category lists of cfg.
func loadLists(ctx context.Context, cfg *config.Config, path string, m *metrics.Metrics, logger *slog.Logger) (*blocklists.Manager, error) {
	return loadListsFrom(ctx, cfg, path, stateDir(cfg), m, logger, nil)
}

// loadListsFrom builds the category lists of cfg, taking over from prev
// (the lists in use, or nil) every category whose sources did not change.
// state is the state directory in use (server.state_dir is restart-only).
func loadListsFrom(ctx context.Context, cfg *config.Config, path, state string, m *metrics.Metrics, logger *slog.Logger, prev *blocklists.Manager) (*blocklists.Manager, error) {
	return buildLists(ctx, cfg, path, state, m, logger, prev, false)
}

// loadListsWithLines is loadLists for `egressd explain`, which names the
// list file and line a match came from: the tables keep them, 4 bytes a
// slot more than the daemon's.
func loadListsWithLines(ctx context.Context, cfg *config.Config, path string, logger *slog.Logger) (*blocklists.Manager, error) {
	return buildLists(ctx, cfg, path, stateDir(cfg), nil, logger, nil, true)
}

func buildLists(ctx context.Context, cfg *config.Config, path, state string, m *metrics.Metrics, logger *slog.Logger, prev *blocklists.Manager, lines bool) (*blocklists.Manager, error) {
	lists, err := blocklists.NewManager(categorySpecs(cfg), blocklists.Options{
		BaseDir:  baseDir(cfg, path),
		StateDir: state,
		Metrics:  m,
		Logger:   logger,
		Lines:    lines,
		// A load leaves its parsed entries (about 8 bytes a listed
		// domain) as garbage: give those pages back at once rather than
		// keep them resident until the scavenger does.
		FreeMemory: true,
	})
	if err != nil {
		return nil, err
	}
	if err := lists.LoadFrom(ctx, prev); err != nil {
		return nil, err
	}
	return lists, nil
}

func compilePolicy(cfg *config.Config, lists *blocklists.Manager) (*policy.Engine, error) {
	if lists == nil {
		// Passed as an untyped nil: a nil *Manager in the interface would not be nil.
		return policy.Compile(cfg.PolicyGroups(), nil, nil)
	}
	return policy.Compile(cfg.PolicyGroups(), lists.Bits(), lists)
}

// firewallSpec is the nftables layout cfg asks for. The table's name and
// the mark are restart-only: they come from started, the config the
// process started with, so the rule matches the mark the upstream sockets
// carry.
func firewallSpec(cfg, started *config.Config) firewall.Spec {
	spec := firewall.Spec{
		Table:        started.Firewall.Table,
		Hooks:        cfg.Firewall.Hooks,
		Grace:        cfg.Firewall.GraceDur,
		Scope:        cfg.Firewall.Scope,
		Audit:        cfg.Server.Audit,
		Mark:         started.Firewall.Mark,
		RemoveOnExit: cfg.Firewall.RemoveOnExit,

		MaxAddressesPerAnswer: cfg.Firewall.MaxAddressesPerAnswer,
		MaxElementsPerSet:     cfg.Firewall.MaxElementsPerSet,
		MaxElementsPerClient:  cfg.Firewall.MaxElementsPerClient,
		SetGCInterval:         cfg.Firewall.GCIntervalDur,
		// The upstream sockets are this process's: the own-traffic rule
		// matches its uid as well as the mark.
		UID:            uint32(os.Geteuid()),
		AcceptInbound:  cfg.Firewall.Inbound == "accept",
		AcceptUnlisted: cfg.Firewall.UnlistedSources == "accept",
		// Restart only: egressd's NFLOG reader is bound at start.
		DropEvents: started.Firewall.DropEvents,
		NFLOGGroup: uint16(started.Firewall.NFLOGGroup),
		// The kernel's bound on them changes with the table.
		DropEventsRate:  uint32(orZero(cfg.Firewall.DropEventsRate)),
		DropEventsBurst: uint32(orZero(cfg.Firewall.DropEventsBurst)),
	}
	for _, g := range cfg.Groups {
		spec.Groups = append(spec.Groups, firewall.GroupSpec{Name: g.Name, Clients: g.Spec.Clients, Audit: g.Spec.Mode == policy.ModeAudit})
	}
	for _, l := range started.Server.Listen { // the sockets bound at start
		if ap, err := netip.ParseAddrPort(l); err == nil {
			spec.DNS = append(spec.DNS, ap)
		}
	}
	for _, l := range slices.Concat(started.Server.TLSListen, started.Server.HTTPSListen) {
		if ap, err := netip.ParseAddrPort(l); err == nil {
			spec.EncryptedDNS = append(spec.EncryptedDNS, ap)
		}
	}
	return spec
}

// orZero is *n, 0 for nil (a config not made by config.Load).
func orZero(n *int) int {
	if n == nil {
		return 0
	}
	return *n
}

// upstreams returns the configured servers, or the nameservers of
// /etc/resolv.conf when none are configured (never egressd itself).
func upstreams(cfg *config.Config) ([]string, error) {
	if len(cfg.Upstream.Servers) > 0 {
		return withDefaultPorts(cfg.Upstream.Servers), nil
	}
	rc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("upstream.servers is empty and /etc/resolv.conf is unreadable: %w", err)
	}
	self := map[string]bool{}
	for _, l := range cfg.Server.Listen {
		self[l] = true
	}
	var out []string
	for _, s := range rc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		hp := netip.AddrPortFrom(a, 53).String()
		if !self[hp] {
			out = append(out, hp)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("upstream.servers is empty and /etc/resolv.conf names no usable nameserver; set [upstream] servers")
	}
	return out, nil
}

// privateAnswerGroups is the set of groups that may receive answers with
// private or loopback addresses (rebinding protection off).
func privateAnswerGroups(cfg *config.Config) map[string]bool {
	allowed := map[string]bool{}
	for _, g := range cfg.Groups {
		if g.AllowPrivate {
			allowed[g.Name] = true
		}
	}
	return allowed
}

func withDefaultPorts(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = withDefaultPort(s)
	}
	return out
}

// zones is the conditional forwarding of cfg.
func zones(cfg *config.Config) []resolver.Zone {
	out := make([]resolver.Zone, 0, len(cfg.Upstream.Zones))
	for _, z := range cfg.Upstream.Zones {
		out = append(out, resolver.Zone{Name: z.Name, Upstreams: withDefaultPorts(z.Servers)})
	}
	return out
}

// withDefaultPort gives a plain DNS server its port; tls:// and https://
// addresses stay as written, since they name the server in metrics.
func withDefaultPort(s string) string {
	if a, err := upstream.ParseAddr(s); err == nil && a.Proto == upstream.Plain {
		return a.HostPort()
	}
	return s
}
