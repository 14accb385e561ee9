package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egressd/egressd/blocklists"
	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/querylog"
	"github.com/egressd/egressd/resolver"
)

func serveCmd(args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := &daemon{path: *path, stderr: stderr}
	if err := d.start(ctx); err != nil {
		d.close()
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			d.logger.Info("shutting down")
			return d.close()
		case <-hup:
			d.reload(ctx)
		}
	}
}

// daemon is one running egressd: everything built from a config.
type daemon struct {
	path   string
	stderr io.Writer
	logger *slog.Logger

	mu       sync.Mutex // serializes reloads
	cfg      *config.Config
	metrics  *metrics.Metrics
	lists    *blocklists.Manager
	stopList context.CancelFunc // ends the current lists' background refresh
	nft      *firewall.NFT      // nil with backend none
	enforcer firewall.Enforcer
	qlog     *querylog.Writer
	server   *resolver.Server
	http     *metrics.Server
	// privateGroups may get private addresses in answers; swapped on reload.
	privateGroups atomic.Pointer[map[string]bool]
	cancel        context.CancelFunc
}

func (d *daemon) start(parent context.Context) error {
	cfg, err := loadConfig(d.path)
	if err != nil {
		return err
	}
	d.cfg = cfg
	d.logger = newLogger(d.stderr, cfg.Log.Level)
	ctx, cancel := context.WithCancel(parent)
	d.cancel = cancel
	d.metrics = metrics.New()
	private := privateAnswerGroups(cfg)
	d.privateGroups.Store(&private)

	ups, err := upstreams(cfg)
	if err != nil {
		return err
	}
	if d.lists, err = loadLists(ctx, cfg, d.path, d.metrics, d.logger); err != nil {
		return err
	}
	engine, err := compilePolicy(cfg, d.lists)
	if err != nil {
		return err
	}
	if err := d.startFirewall(cfg); err != nil {
		return err
	}
	if d.qlog, err = querylog.Open(cfg.Log.Queries, querylog.Options{SampleAllowed: cfg.Log.SampleAllowed}); err != nil {
		return fmt.Errorf("log.queries: %w", err)
	}
	d.server, err = resolver.New(resolver.Options{
		Listen:      cfg.Server.Listen,
		Clients:     cfg.Server.ClientPrefixes,
		Upstreams:   ups,
		Bootstrap:   withDefaultPorts(cfg.Upstream.Bootstrap),
		Zones:       zones(cfg),
		Timeout:     cfg.Upstream.TimeoutDur,
		CacheSize:   cfg.Cache.Size,
		CacheMaxTTL: cfg.Cache.MaxTTLDur,
		MaxTTL:      cfg.Firewall.MaxTTLDur,
		FailOpen:    cfg.Firewall.FailOpen,
		Mark:        d.upstreamMark(cfg),
		Hosts:       cfg.HostAddrs,
		DoHCanary:   *cfg.Server.DoHCanary,
		ServeStale:  cfg.Cache.ServeStaleDur,

		RateLimit:            cfg.Server.RateLimit,
		RateBurst:            cfg.Server.RateBurst,
		RateLimitIPv4Prefix:  cfg.Server.RateLimitIPv4Prefix,
		RateLimitIPv6Prefix:  cfg.Server.RateLimitIPv6Prefix,
		CacheMaxBytes:        cfg.Cache.MaxBytes,
		MaxInFlightPerClient: cfg.Server.MaxInFlightPerClient,
		TCPIdleTimeout:       cfg.Server.TCPIdle,
		TCPMaxConns:          cfg.Server.TCPMaxConns,
		TCPMaxConnsPerClient: cfg.Server.TCPMaxPerIP,
		AllowPrivateAnswers:  func(group string) bool { return (*d.privateGroups.Load())[group] },
		Policy:               engine,
		Enforcer:             d.enforcer,
		QueryLog:             d.qlog,
		Metrics:              d.metrics,
		Logger:               d.logger,
	})
	if err != nil {
		return err
	}
	if err := d.server.Start(); err != nil {
		return err
	}
	if cfg.Metrics.Listen != "" {
		d.http, err = metrics.Serve(ctx, cfg.Metrics.Listen, d.metrics, d.readiness)
		if err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
		if err := d.metrics.WatchQueryLog(func() metrics.QueryLogCounters { return d.qlog }); err != nil {
			return err
		}
	}
	d.startLists(ctx, d.lists)
	d.logger.Info("egressd serving", "listen", cfg.Server.Listen, "upstreams", ups,
		"groups", len(cfg.Groups), "categories", len(cfg.Categories),
		"firewall", d.backendName(), "mode", cfg.Server.Mode, "config", cfg.File)
	return nil
}

func (d *daemon) upstreamMark(cfg *config.Config) uint32 {
	if d.nft == nil {
		return 0
	}
	return cfg.Firewall.Mark
}

func (d *daemon) backendName() string {
	if d.nft != nil {
		return "nftables"
	}
	return "none"
}

// startFirewall installs the nftables table, or the log-only backend.
func (d *daemon) startFirewall(cfg *config.Config) error {
	if cfg.Firewall.Backend == "none" {
		d.enforcer = firewall.NewNone(d.logger)
		return nil
	}
	if err := firewall.CanAdminNetwork(); err != nil {
		if !cfg.Firewall.Fallback {
			return err
		}
		d.logger.Warn("firewall falls back to backend \"none\": NOTHING IS ENFORCED, answers are only logged", "reason", err.Error())
		d.enforcer = firewall.NewNone(d.logger)
		return nil
	}
	nft, err := firewall.NewNFTables(firewallSpec(cfg), firewall.Options{Metrics: d.metrics, Logger: d.logger})
	if err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	d.nft, d.enforcer = nft, nft
	return nil
}

// readiness lists what keeps the daemon from being ready.
func (d *daemon) readiness() []string {
	var problems []string
	if d.server == nil || !d.server.Ready() {
		problems = append(problems, "no upstream has answered yet")
	}
	if d.nft != nil {
		if err := d.nft.Check(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	return problems
}

// reload applies a changed config and refreshes the lists. A bad config
// keeps the running one.
func (d *daemon) reload(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.qlog.Reopen(); err != nil {
		d.logger.Error("reopening query log", "err", err)
	}
	cfg, err := loadConfig(d.path)
	if err != nil {
		d.metrics.ConfigReloads.WithLabelValues("error").Inc()
		d.logger.Error("config reload failed; keeping the running config", "err", err.Error())
		return
	}
	if err := d.apply(ctx, cfg); err != nil {
		d.metrics.ConfigReloads.WithLabelValues("error").Inc()
		d.logger.Error("config reload failed; keeping the running config", "err", err.Error())
		return
	}
	d.metrics.ConfigReloads.WithLabelValues("ok").Inc()
	changes := config.Diff(d.cfg, cfg)
	d.logger.Info("config reloaded", "changes", len(changes))
	for _, c := range changes {
		d.logger.Info("config change", "change", c)
	}
	d.cfg = cfg
}

func (d *daemon) apply(ctx context.Context, cfg *config.Config) error {
	restartOnly := []struct {
		what string
		same bool
	}{
		{"server.listen", equalStrings(d.cfg.Server.Listen, cfg.Server.Listen)},
		{"upstream", equalStrings(d.cfg.Upstream.Servers, cfg.Upstream.Servers) &&
			equalStrings(d.cfg.Upstream.Bootstrap, cfg.Upstream.Bootstrap) && equalZones(d.cfg, cfg)},
		{"firewall.backend", d.cfg.Firewall.Backend == cfg.Firewall.Backend},
		{"log.queries", d.cfg.Log.Queries == cfg.Log.Queries},
		{"metrics.listen", d.cfg.Metrics.Listen == cfg.Metrics.Listen},
		{"server.rate_limit (and its burst, prefixes, max_in_flight_per_client)", sameClientLimits(d.cfg, cfg)},
		{"cache", d.cfg.Cache == cfg.Cache},
	}
	for _, r := range restartOnly {
		if !r.same {
			d.logger.Warn("this setting changes only on restart", "key", r.what)
		}
	}
	lists := d.lists
	if !equalCategories(d.cfg, cfg) {
		var err error
		if lists, err = loadLists(ctx, cfg, d.path, d.metrics, d.logger); err != nil {
			return err
		}
	} else if err := lists.Refresh(ctx); err != nil {
		// The last good copy of each failing list stays in use.
		d.logger.Warn("list refresh had errors", "err", err.Error())
	}
	engine, err := compilePolicy(cfg, lists)
	if err != nil {
		return err
	}
	if d.nft != nil {
		// The table is replaced in one transaction before the new policy
		// answers, so no answer refers to a set that does not exist yet.
		if err := d.nft.Reload(firewallSpec(cfg)); err != nil {
			return fmt.Errorf("firewall: %w", err)
		}
	}
	private := privateAnswerGroups(cfg)
	d.privateGroups.Store(&private)
	d.server.SetPolicy(engine)
	if lists != d.lists {
		d.startLists(ctx, lists)
	}
	return nil
}

func (d *daemon) close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if d.server != nil {
		errs = append(errs, d.server.Shutdown(ctx))
	}
	errs = append(errs, d.http.Close())
	if d.stopList != nil {
		d.stopList()
	}
	if d.enforcer != nil {
		errs = append(errs, d.enforcer.Close())
	}
	if d.qlog != nil {
		errs = append(errs, d.qlog.Close())
	}
	if d.cancel != nil {
		d.cancel()
	}
	return errors.Join(errs...)
}

// startLists makes lists the current ones and starts their background
// refresh, ending the refresh of the lists they replace.
func (d *daemon) startLists(ctx context.Context, lists *blocklists.Manager) {
	if d.stopList != nil {
		d.stopList()
	}
	lctx, cancel := context.WithCancel(ctx)
	d.lists, d.stopList = lists, cancel
	lists.Start(lctx)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalZones(a, b *config.Config) bool {
	if len(a.Upstream.Zones) != len(b.Upstream.Zones) {
		return false
	}
	for i, za := range a.Upstream.Zones {
		zb := b.Upstream.Zones[i]
		if za.Name != zb.Name || !equalStrings(za.Servers, zb.Servers) {
			return false
		}
	}
	return true
}

func equalCategories(a, b *config.Config) bool {
	if len(a.Categories) != len(b.Categories) {
		return false
	}
	for name, ca := range a.Categories {
		cb, ok := b.Categories[name]
		if !ok || ca.Refresh != cb.Refresh || ca.Match != cb.Match || ca.Format != cb.Format || !equalStrings(ca.Sources, cb.Sources) {
			return false
		}
	}
	return true
}

// sameClientLimits reports whether the per-client limits are unchanged.
func sameClientLimits(a, b *config.Config) bool {
	x, y := &a.Server, &b.Server
	return x.RateLimit == y.RateLimit && x.RateBurst == y.RateBurst &&
		x.RateLimitIPv4Prefix == y.RateLimitIPv4Prefix && x.RateLimitIPv6Prefix == y.RateLimitIPv6Prefix &&
		x.MaxInFlightPerClient == y.MaxInFlightPerClient
}
