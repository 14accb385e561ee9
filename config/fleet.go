package config

import (
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/egressd/egressd/fleet"
)

// Fleet is the [fleet] section: approvals shared with other egressd nodes
// through NATS JetStream. Without servers it is off and nothing else in
// it may be set.
type Fleet struct {
	Servers []string `toml:"servers"` // NATS URLs
	// Node is this node's name in the fleet; "" is the host name up to its
	// first dot.
	Node string `toml:"node"`
	// Publish are the groups whose approvals this resolver publishes;
	// Enforce the groups whose approvals this node applies.
	Publish []string `toml:"publish"`
	Enforce []string `toml:"enforce"`
	// Credentials is a NATS credentials file (JWT and nkey seed);
	// TLSCA, TLSCert, TLSKey the files for TLS to the servers.
	Credentials    string   `toml:"credentials"`
	TLSCA          string   `toml:"tls_ca"`
	TLSCert        string   `toml:"tls_cert"`
	TLSKey         string   `toml:"tls_key"`
	SubjectPrefix  string   `toml:"subject_prefix"`
	Stream         string   `toml:"stream"`
	PublishTimeout string   `toml:"publish_timeout"`
	Queue          int      `toml:"queue"`
	Confirm        []string `toml:"confirm"`
	ConfirmTimeout string   `toml:"confirm_timeout"`

	PublishTimeoutDur time.Duration `toml:"-"`
	ConfirmTimeoutDur time.Duration `toml:"-"`
}

// Enabled reports whether the section names NATS servers.
func (f *Fleet) Enabled() bool { return len(f.Servers) > 0 }

// NodeName is node, or the host name up to its first dot.
func (f *Fleet) NodeName() string {
	if f.Node != "" {
		return f.Node
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "egressd"
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}

// Limits of [fleet] values.
const (
	maxFleetQueue = 1 << 20
	// fleetBudget bounds publish_timeout plus confirm_timeout: the
	// resolver gives the firewall (and so the fleet) 3s per answer.
	fleetBudget = 2500 * time.Millisecond
)

func applyFleetDefaults(f *Fleet) {
	if f.SubjectPrefix == "" {
		f.SubjectPrefix = fleet.DefaultSubjectPrefix
	}
	if f.Stream == "" {
		f.Stream = fleet.DefaultStream
	}
	if f.PublishTimeout == "" {
		f.PublishTimeout = fleet.DefaultPublishTimeout.String()
	}
	if f.Queue == 0 {
		f.Queue = fleet.DefaultQueue
	}
	if f.ConfirmTimeout == "" {
		f.ConfirmTimeout = fleet.DefaultConfirmTimeout.String()
	}
}

func (v *validator) fleet(c *Config) {
	f := &c.Fleet
	if !f.Enabled() {
		for key, set := range map[string]bool{
			"fleet.node": f.Node != "", "fleet.publish": len(f.Publish) > 0, "fleet.enforce": len(f.Enforce) > 0,
			"fleet.credentials": f.Credentials != "", "fleet.tls_ca": f.TLSCA != "", "fleet.tls_cert": f.TLSCert != "",
			"fleet.tls_key": f.TLSKey != "", "fleet.confirm": len(f.Confirm) > 0,
		} {
			if set {
				v.err(key, "%s: set, but fleet.servers is empty (the fleet is off)", key)
			}
		}
	}
	for _, s := range f.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			v.errValue("fleet.servers", s, "fleet.servers: invalid NATS URL %q (want nats://HOST:PORT or tls://HOST:PORT)", s)
			continue
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			v.errValue("fleet.servers", s, "fleet.servers: %q has no port", s)
		}
	}
	if f.Node != "" && !fleet.ValidToken(f.Node) {
		v.err("fleet.node", "fleet.node: %q is not a NATS subject token (no dots, wildcards or spaces)", f.Node)
	}
	groups := map[string]bool{}
	for _, g := range c.Groups {
		groups[g.Name] = true
	}
	for _, key := range []string{"fleet.publish", "fleet.enforce"} {
		list := f.Publish
		if key == "fleet.enforce" {
			list = f.Enforce
		}
		seen := map[string]bool{}
		for _, g := range list {
			switch {
			case !groups[g]:
				v.errValue(key, g, "%s: no group named %q", key, g)
			case !fleet.ValidToken(g):
				v.errValue(key, g, "%s: group name %q is not a NATS subject token (no dots, wildcards or spaces)", key, g)
			case seen[g]:
				v.errValue(key, g, "%s: %q listed twice", key, g)
			}
			seen[g] = true
		}
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		v.err("fleet", "fleet: tls_cert and tls_key go together")
	}
	for _, tok := range strings.Split(f.SubjectPrefix, ".") {
		if !fleet.ValidToken(tok) {
			v.err("fleet.subject_prefix", "fleet.subject_prefix: %q is not a NATS subject (dot-separated tokens, no wildcards or spaces)", f.SubjectPrefix)
			break
		}
	}
	if !fleet.ValidToken(f.Stream) || strings.ContainsAny(f.Stream, `/\`) {
		v.err("fleet.stream", "fleet.stream: %q is not a JetStream stream name", f.Stream)
	}
	f.PublishTimeoutDur = v.duration("fleet.publish_timeout", f.PublishTimeout, time.Millisecond)
	f.ConfirmTimeoutDur = v.duration("fleet.confirm_timeout", f.ConfirmTimeout, time.Millisecond)
	if f.PublishTimeoutDur+f.ConfirmTimeoutDur > fleetBudget {
		v.err("fleet.confirm_timeout", "fleet: publish_timeout plus confirm_timeout is %s, more than %s (the resolver waits at most 3s for the firewall)",
			f.PublishTimeoutDur+f.ConfirmTimeoutDur, fleetBudget)
	}
	if f.Queue < 1 || f.Queue > maxFleetQueue {
		v.err("fleet.queue", "fleet.queue: %d is out of range (1 to %d)", f.Queue, maxFleetQueue)
	}
	for _, n := range f.Confirm {
		switch {
		case !fleet.ValidToken(n):
			v.errValue("fleet.confirm", n, "fleet.confirm: %q is not a node name (a NATS subject token)", n)
		case n == f.NodeName():
			v.errValue("fleet.confirm", n, "fleet.confirm: %q is this node (it never confirms its own approvals)", n)
		}
	}
	if len(f.Confirm) > 0 && len(f.Publish) == 0 {
		v.err("fleet.confirm", "fleet.confirm: set, but fleet.publish is empty (nothing is published to confirm)")
	}
}
