package main

import (
	"log/slog"

	"github.com/egressd/egressd/blocklists"
	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/resolver"
)

// running is everything a config decides that SIGHUP applies. A reload
// builds a new one aside and installs all of it, or none of it when a
// part fails; what restart-only keys decide comes from started, the
// config the process started with (config.Keys says which keys those are).
type running struct {
	resolver   resolver.Settings
	firewall   firewall.Spec
	groups     []policy.GroupSpec
	categories []blocklists.CategorySpec
	logLevel   slog.Level
	// tlsFiles are the certificate and key SIGHUP reads again for the
	// DNS-over-TLS and DNS-over-HTTPS listeners.
	tlsFiles [2]string
}

func newRunning(cfg, started *config.Config) running {
	return running{
		resolver: resolver.Settings{
			Clients:        cfg.Server.ClientPrefixes,
			MaxTTL:         cfg.Firewall.MaxTTLDur,
			FailOpen:       cfg.Firewall.FailOpen,
			Hosts:          cfg.HostAddrs,
			DoHCanary:      *cfg.Server.DoHCanary,
			CacheMaxTTL:    cfg.Cache.MaxTTLDur,
			ServeStale:     cfg.Cache.ServeStaleDur,
			RateLimit:      cfg.Server.RateLimit,
			RateBurst:      cfg.Server.RateBurst,
			PrivateAnswers: privateAnswerGroups(cfg),
			TrustedProxies: cfg.Server.TrustedProxyPrefixes,
		},
		firewall:   firewallSpec(cfg, started),
		groups:     cfg.PolicyGroups(),
		categories: categorySpecs(cfg),
		logLevel:   logLevel(cfg.Log.Level),
		tlsFiles:   [2]string{cfg.Server.TLSCert, cfg.Server.TLSKey},
	}
}
