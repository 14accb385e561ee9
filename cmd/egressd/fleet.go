package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/fleet"
	"github.com/egressd/egressd/metrics"
)

// startFleet connects to the fleet when [fleet] names servers: the node
// applies the approvals of the groups in fleet.enforce to local (the
// firewall the resolver uses), and, for egressd serve, the returned
// Enforcer publishes those of fleet.publish after local holds them.
// Without servers it returns local unchanged.
func (d *daemon) startFleet(cfg *config.Config, local enforce.Enforcer) (enforce.Enforcer, error) {
	f := cfg.Fleet
	if !f.Enabled() {
		return local, nil
	}
	m, err := fleet.NewMetrics(d.metrics.Registry)
	if err != nil {
		return nil, err
	}
	publish := f.Publish
	if d.agent {
		publish = nil // an agent answers nothing, so it has nothing to publish
	}
	opts := fleet.Options{
		Servers: f.Servers, Node: f.NodeName(), Publish: publish, Enforce: f.Enforce, Apply: local,
		Credentials: f.Credentials, TLSCA: f.TLSCA, TLSCert: f.TLSCert, TLSKey: f.TLSKey,
		SubjectPrefix: f.SubjectPrefix, Stream: f.Stream, PublishTimeout: f.PublishTimeoutDur,
		Queue: f.Queue, Confirm: f.Confirm, ConfirmTimeout: f.ConfirmTimeoutDur,
		Settings: d.fleetSettings(cfg),
		Metrics:  m, Logger: d.logger,
	}
	d.fleet, err = fleet.Start(opts)
	if err != nil {
		return nil, err
	}
	d.logger.Info("fleet", "node", opts.Node, "servers", f.Servers, "publish", publish, "enforce", f.Enforce, "confirm", f.Confirm)
	return d.fleet.Wrap(local), nil
}

// republishInherited hands the fleet the elements carried over from the
// table an earlier egressd left for its own answers, as the re-check at
// start (recheckInherited, before it) kept them: approvals that process
// had queued when it stopped (NATS away) reach the other nodes, and
// agents that lost theirs get them back, without waiting for a client to
// ask again.
func (d *daemon) republishInherited() {
	if d.fleet == nil || d.nft == nil {
		return
	}
	inherited := d.nft.Inherited()
	if len(inherited) == 0 {
		return
	}
	held := republishable(inherited)
	if n := d.fleet.Republish(held); n > 0 {
		d.logger.Info("fleet: publishing again the approvals the firewall kept across the restart", "approvals", n, "carried_over", len(inherited))
	}
}

// republishable is what of inherited (the elements the re-check at start
// kept) to publish again: those this node added for its own answers (not
// for other nodes' approvals, FromFleet), with the answer they were added
// for (the query name and the names it led to).
func republishable(inherited []firewall.LiveElement) []fleet.Held {
	var held []fleet.Held
	for _, e := range inherited {
		if e.Name == "" || e.FromFleet {
			continue
		}
		held = append(held, fleet.Held{Allowance: enforce.Allowance{
			Group: e.Group, Client: e.Client, IPs: []netip.Addr{e.Dst}, Ports: e.Ports, Name: e.Name, Targets: e.Targets,
		}, Until: e.Expiry})
	}
	return held
}

// fleetSettings are what cfg's firewall and the policy in use decide for
// the fleet; a reload passes them on. Messages from other nodes, and a
// publishing resolver's stale answers, are checked as the firewall checks
// its elements: the policy, with rebinding protection where there is a
// resolver.
func (d *daemon) fleetSettings(cfg *config.Config) fleet.Settings {
	engine := d.engine.Load()
	return fleet.Settings{
		Grace:       cfg.Firewall.GraceDur,
		ScopeClient: cfg.Firewall.Scope == firewall.ScopeClient,
		MaxLifetime: cfg.Firewall.MaxTTLDur + cfg.Firewall.GraceDur,
		Recheck:     d.recheck(newRunning(cfg, cfg), engine),
		Generation:  engine.Generation,
	}
}

// agentCmd runs egressd agent: no DNS listener, the firewall of the
// config's groups and [firewall], filled with the approvals other nodes
// publish for the groups of fleet.enforce.
func agentCmd(args []string, stderr io.Writer) error {
	path, err := daemonFlags("agent", args, stderr)
	if err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("%w: egressd agent needs -config FILE with a [fleet] section", errUsage)
	}
	d := &daemon{path: path, stderr: stderr, agent: true}
	return d.run(d.startAgent)
}

func (d *daemon) startAgent(parent context.Context) error {
	cfg, err := loadConfig(d.path)
	if err != nil {
		return err
	}
	if !cfg.Fleet.Enabled() || len(cfg.Fleet.Enforce) == 0 {
		return fmt.Errorf("%s: egressd agent needs [fleet] servers and enforce", cfg.File)
	}
	ctx := d.begin(parent, cfg)
	// Lists too: messages are checked against this node's policy, its
	// categories included.
	if d.lists, err = loadLists(ctx, cfg, d.path, d.metrics, d.logger); err != nil {
		return err
	}
	engine, err := compilePolicy(cfg, d.lists)
	if err != nil {
		return err
	}
	d.engine.Store(engine)
	if err := d.startFirewall(cfg); err != nil {
		return err
	}
	if err := d.recheckInherited(cfg, engine); err != nil {
		return err
	}
	// Drops are explained as on a resolver (drop_events "nflog" or
	// "both"), joined to the approvals this agent applied instead of the
	// answers it gave.
	if err := d.openQueryLog(cfg); err != nil {
		return err
	}
	applyTo, _, err := d.startDrops(ctx, cfg)
	if err != nil {
		return err
	}
	if _, err := d.startFleet(cfg, applyTo); err != nil {
		return err
	}
	if cfg.Metrics.Listen != "" {
		if d.http, err = metrics.Serve(ctx, cfg.Metrics.Listen, d.metrics, d.readiness); err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
	}
	d.startLists(ctx, d.lists)
	d.logger.Info("egressd agent running", "groups", cfg.Fleet.Enforce, "firewall", d.backendName(), "config", cfg.File)
	return nil
}
