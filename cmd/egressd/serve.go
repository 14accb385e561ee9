package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egressd/egressd/blocklists"
	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/dnstap"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/fleet"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/nflog"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/querylog"
	"github.com/egressd/egressd/resolver"
)

func serveCmd(args []string, stderr io.Writer) error {
	path, err := daemonFlags("serve", args, stderr)
	if err != nil {
		return err
	}
	d := &daemon{path: path, stderr: stderr}
	return d.run(d.start)
}

// daemonFlags parses the command line of a long-running command (serve,
// agent): -config FILE and nothing else.
func daemonFlags(name string, args []string, stderr io.Writer) (string, error) {
	fs := newFlagSet(name, stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return *path, nil
}

// run starts the daemon with start and then serves until SIGTERM or
// SIGINT, reloading on SIGHUP.
func (d *daemon) run(start func(context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := start(ctx); err != nil {
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

	mu sync.Mutex // serializes reloads
	// cfg is the config in use. started is the one the process started
	// with: it holds the running value of every restart-only key.
	cfg, started *config.Config
	logLevel     slog.LevelVar
	listCtx      context.Context // ends with the current lists
	metrics      *metrics.Metrics
	lists        *blocklists.Manager
	stopList     context.CancelFunc // ends the current lists' background refresh
	nft          *firewall.NFT      // nil with backend none
	enforcer     firewall.Enforcer
	// fellBack says why backend "nftables" fell back to "none"; set, the
	// daemon never reports ready, since it enforces nothing.
	fellBack string
	qlog     *querylog.Writer
	tap      *dnstap.Output // nil without dnstap.output
	server   *resolver.Server
	http     *metrics.Server
	cancel   context.CancelFunc

	// engine is the policy in use; dropReader reads drop events (nil
	// unless firewall.drop_events sends them to NFLOG).
	engine     atomic.Pointer[policy.Engine]
	dropReader *nflog.Reader

	// fleet is the connection to other nodes (nil without [fleet]
	// servers); agent says the daemon is egressd agent, with no resolver.
	fleet *fleet.Node
	agent bool
}

// begin is what serve and agent do first with the config they start
// with: logging, the memory limit, metrics, and the context everything
// started after runs in.
func (d *daemon) begin(parent context.Context, cfg *config.Config) context.Context {
	d.cfg, d.started = cfg, cfg
	d.logLevel.Set(logLevel(cfg.Log.Level))
	d.logger = slog.New(slog.NewTextHandler(d.stderr, &slog.HandlerOptions{Level: &d.logLevel}))
	applyMemoryLimit(cfg.Server.MemoryLimit, d.logger)
	policy.SetNAT64Prefixes(cfg.Server.NAT64)
	ctx, cancel := context.WithCancel(parent)
	d.cancel = cancel
	d.metrics = metrics.New()
	d.metrics.Profiles = cfg.Metrics.Profiles
	applyProfiles(cfg.Metrics.Profiles)
	return ctx
}

func (d *daemon) start(parent context.Context) error {
	cfg, err := loadConfig(d.path)
	if err != nil {
		return err
	}
	ctx := d.begin(parent, cfg)

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
	if err := d.openQueryLog(cfg); err != nil {
		return err
	}
	if d.tap, err = openDnstap(cfg, d.logger); err != nil {
		return err
	}
	d.engine.Store(engine)
	enf, qlog, err := d.startDrops(ctx, cfg)
	if err != nil {
		return err
	}
	if enf, err = d.startFleet(cfg, enf); err != nil {
		return err
	}
	d.server, err = resolver.New(resolver.Options{
		Settings:  newRunning(cfg, cfg).resolver,
		Listen:    cfg.Server.Listen,
		Upstreams: ups,
		Bootstrap: withDefaultPorts(cfg.Upstream.Bootstrap),
		Zones:     zones(cfg),
		Timeout:   cfg.Upstream.TimeoutDur,
		CacheSize: cfg.Cache.Size,
		Mark:      d.upstreamMark(cfg),

		RateLimitIPv4Prefix:  cfg.Server.RateLimitIPv4Prefix,
		RateLimitIPv6Prefix:  cfg.Server.RateLimitIPv6Prefix,
		CacheMaxBytes:        cfg.Cache.MaxBytes,
		MaxInFlightPerClient: cfg.Server.MaxInFlightPerClient,
		TCPIdleTimeout:       cfg.Server.TCPIdle,
		TCPMaxConns:          cfg.Server.TCPMaxConns,
		TCPMaxConnsPerClient: cfg.Server.TCPMaxPerIP,
		Encrypted: resolver.EncryptedOptions{
			TLSListen:   cfg.Server.TLSListen,
			HTTPSListen: cfg.Server.HTTPSListen,
			HTTPSPath:   cfg.Server.HTTPSPath,
			Certificate: cfg.Server.Certificate,
		},
		Policy:   engine,
		Enforcer: enf,
		QueryLog: qlog,
		Tap:      tapOrNil(d.tap),
		Metrics:  d.metrics,
		Logger:   d.logger,
	})
	if err != nil {
		return err
	}
	if d.fleet != nil {
		// Now with the resolver's rebinding protection (see fleetSettings).
		d.fleet.Configure(d.fleetSettings(cfg))
	}
	if err := d.recheckInherited(cfg, engine); err != nil {
		return err
	}
	d.republishInherited()
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
		if err := d.metrics.WatchTCP(func() metrics.TCPCounters { return d.server }); err != nil {
			return err
		}
		if d.tap != nil {
			if err := d.metrics.WatchDnstap(d.tap); err != nil {
				return err
			}
		}
	}
	d.startLists(ctx, d.lists)
	d.logger.Info("egressd serving", "listen", cfg.Server.Listen, "upstreams", ups,
		"groups", len(cfg.Groups), "categories", len(cfg.Categories),
		"firewall", d.backendName(), "mode", cfg.Server.Mode, "config", cfg.File)
	return nil
}

// openDnstap starts the dnstap output, or returns nil without one.
func openDnstap(cfg *config.Config, log *slog.Logger) (*dnstap.Output, error) {
	c := cfg.Dnstap
	if c.OutputKind == "" {
		return nil, nil
	}
	o := dnstap.Options{
		Identity: c.Identity, Version: c.Version, Queue: c.Queue,
		ClientQueries: *c.ClientQueries, ClientResponses: *c.ClientResponses, Forwarder: *c.Forwarder,
		Logger: log,
	}
	if o.Identity == "" {
		o.Identity, _ = os.Hostname()
	}
	if o.Version == "" {
		o.Version = "egressd " + version
	}
	switch c.OutputKind {
	case "unix":
		o.Socket = c.OutputTarget
	case "tcp":
		o.Address = c.OutputTarget
	case "file":
		o.File = c.OutputTarget
	}
	out, err := dnstap.Open(o)
	if err != nil {
		return nil, fmt.Errorf("dnstap.output: %w", err)
	}
	return out, nil
}

// tapOrNil keeps a nil *dnstap.Output from becoming a non-nil
// resolver.Tap, which would cost the request path a call per query.
func tapOrNil(t *dnstap.Output) resolver.Tap {
	if t == nil {
		return nil
	}
	return t
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

// canAdminNetwork is firewall.CanAdminNetwork; tests replace it.
var canAdminNetwork = firewall.CanAdminNetwork

// startFirewall installs the nftables table, or the log-only backend.
func (d *daemon) startFirewall(cfg *config.Config) error {
	if cfg.Firewall.Backend == "none" {
		d.enforcer = firewall.NewNone(d.logger)
		return nil
	}
	if err := canAdminNetwork(); err != nil {
		if !cfg.Firewall.Fallback {
			return err
		}
		d.logger.Warn("firewall falls back to backend \"none\": NOTHING IS ENFORCED, answers are only logged", "reason", err.Error())
		d.enforcer = firewall.NewNone(d.logger)
		d.fellBack = err.Error()
		return nil
	}
	nft, err := firewall.NewNFTables(firewallSpec(cfg, cfg), firewall.Options{Metrics: d.metrics, Logger: d.logger})
	if err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	d.nft, d.enforcer = nft, nft
	d.warnFirewall(cfg)
	return nil
}

// warnFirewall logs what the table leaves to unlisted_sources or lets
// through by choice (firewallWarnings).
func (d *daemon) warnFirewall(cfg *config.Config) {
	for _, w := range firewallWarnings(cfg) {
		d.logger.Warn(w)
	}
}

// readiness lists what keeps the daemon from being ready.
func (d *daemon) readiness() []string {
	var problems []string
	if !d.agent && (d.server == nil || !d.server.Ready()) {
		problems = append(problems, "no upstream has answered yet")
	}
	if d.fleet != nil {
		// An agent needs NATS to be of use; a resolver answers and
		// enforces without it, but not before it holds its peers'
		// approvals.
		problems = append(problems, d.fleet.Problems(d.agent)...)
	}
	if d.fellBack != "" {
		problems = append(problems, `firewall fell back to backend "none", nothing is enforced: `+d.fellBack)
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
	for _, key := range config.RestartOnly(d.started, cfg) {
		d.logger.Warn("this setting changes only on restart; the running value stays", "key", key)
	}
	// Lists are never fetched before the new config applies: categories
	// whose sources did not change keep the lists in use, and all of them
	// are refreshed in the background afterwards. Only a category that is
	// new or reads other sources is loaded first, as at start.
	lists := d.lists
	if !equalCategories(d.cfg, cfg) {
		var err error
		if lists, err = loadListsFrom(ctx, cfg, d.path, stateDir(d.started), d.metrics, d.logger, d.lists); err != nil {
			return err
		}
	}
	engine, err := compilePolicy(cfg, lists)
	if err != nil {
		return err
	}
	next := newRunning(cfg, d.started)
	if d.nft != nil {
		// The table is replaced in one transaction before the new policy
		// answers, so no answer refers to a set that does not exist yet.
		// Live elements the new policy no longer approves (a group now
		// enforcing, a rule removed) are left out of it.
		// Answers decided under the old policy and not yet in the table
		// are asked about too (enforce.ErrStale).
		if err := d.nft.ReloadRecheck(next.firewall, d.recheck(next, engine), engine.Generation()); err != nil {
			return fmt.Errorf("firewall: %w", err)
		}
		d.warnFirewall(cfg)
	}
	d.engine.Store(engine)
	if d.fleet != nil {
		d.fleet.Configure(d.fleetSettings(cfg))
	}
	if d.server != nil { // egressd agent has no resolver
		d.server.Configure(next.resolver)
		d.server.SetPolicy(engine)
		// The certificate and key are read again on every reload
		// (renewed in place); handshakes from now on use them, open
		// connections stay.
		d.server.SetCertificate(cfg.Server.Certificate)
	}
	d.logLevel.Set(next.logLevel)
	if lists != d.lists {
		d.startLists(ctx, lists)
	}
	d.refreshLists(lists)
	return nil
}

// openQueryLog opens [log] queries: answers and drops for egressd serve,
// drops for egressd agent.
func (d *daemon) openQueryLog(cfg *config.Config) error {
	var err error
	if d.qlog, err = querylog.Open(cfg.Log.Queries, querylog.Options{
		SampleAllowed:       cfg.Log.SampleAllowed,
		MaxSize:             cfg.Log.MaxSizeBytes,
		MaxFiles:            *cfg.Log.MaxFiles,
		DeniedPerClientRate: *cfg.Log.DeniedPerClientRate,
	}); err != nil {
		return fmt.Errorf("log.queries: %w", err)
	}
	return nil
}

// recheck is what the firewall asks about live elements and answers
// decided before a reload: the policy, with rebinding protection as the
// settings in run have it (egressd agent, without a resolver: the policy
// alone).
func (d *daemon) recheck(run running, engine *policy.Engine) firewall.Recheck {
	if d.server == nil {
		return engine.Recheck
	}
	return firewall.Recheck(d.server.RebindingRecheck(run.resolver, engine))
}

// recheckInherited asks the policy egressd starts with about the
// elements the firewall carried over from a table an earlier egressd
// left, as a reload would: the config may have changed meanwhile.
func (d *daemon) recheckInherited(cfg *config.Config, engine *policy.Engine) error {
	if d.nft == nil || len(d.nft.Inherited()) == 0 {
		return nil
	}
	run := newRunning(cfg, cfg)
	if err := d.nft.ReloadRecheck(run.firewall, d.recheck(run, engine), engine.Generation()); err != nil {
		return fmt.Errorf("firewall: re-check the elements carried over: %w", err)
	}
	return nil
}

// refreshLists refreshes every list of lists now, in the background; the
// refresh ends when lists are replaced.
func (d *daemon) refreshLists(lists *blocklists.Manager) {
	ctx, logger := d.listCtx, d.logger
	go func() {
		if err := lists.Refresh(ctx); err != nil && ctx.Err() == nil {
			// The last good copy of each failing list stays in use.
			logger.Warn("list refresh had errors", "err", err.Error())
		}
	}()
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
	if d.fleet != nil { // before the firewall it applies to
		errs = append(errs, d.fleet.Close())
	}
	if d.enforcer != nil {
		errs = append(errs, d.enforcer.Close())
	}
	if d.qlog != nil {
		errs = append(errs, d.qlog.Close())
	}
	errs = append(errs, d.tap.Close()) // after the server: its last responses
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
	d.lists, d.stopList, d.listCtx = lists, cancel, lctx
	lists.Start(lctx)
}

// logLevel parses a validated log.level.
func logLevel(level string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return l
}

func equalCategories(a, b *config.Config) bool {
	if len(a.Categories) != len(b.Categories) {
		return false
	}
	for name, ca := range a.Categories {
		cb, ok := b.Categories[name]
		if !ok || ca.Refresh != cb.Refresh || ca.Match != cb.Match || ca.Format != cb.Format || !slices.Equal(ca.Sources, cb.Sources) {
			return false
		}
	}
	return true
}
