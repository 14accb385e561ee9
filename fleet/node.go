package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/policy"
)

// Defaults of the [fleet] keys left out.
const (
	DefaultSubjectPrefix  = "egressd"
	DefaultStream         = "EGRESSD_APPROVALS"
	DefaultPublishTimeout = 500 * time.Millisecond
	DefaultQueue          = 10000
	DefaultConfirmTimeout = time.Second
)

// Options configure a Node. Servers and Node are required; Publish and
// Enforce say which roles it has.
type Options struct {
	Servers []string // NATS URLs
	Node    string   // this node's name, a subject token
	// Publish are the groups whose approvals this node publishes (through
	// the Enforcer Wrap returns); Enforce the groups whose approvals of
	// other nodes it installs into Apply.
	Publish []string
	Enforce []string
	Apply   enforce.Enforcer

	Credentials            string // NATS credentials file
	TLSCA, TLSCert, TLSKey string
	SubjectPrefix, Stream  string
	PublishTimeout         time.Duration
	Queue                  int
	Confirm                []string
	ConfirmTimeout         time.Duration
	ReconnectWait          time.Duration // between reconnect attempts; default 250ms

	// Settings are what the local firewall and policy decide; Configure
	// changes them on a running node.
	Settings

	Metrics *Metrics // nil: counted nowhere
	Logger  *slog.Logger
	// Now is the local clock (tests skew it); default time.Now.
	Now func() time.Time
}

// Settings follow the local firewall and policy, and may change while the
// node runs (a config reload).
type Settings struct {
	// Grace is the local firewall's grace: an element lives TTL plus
	// Grace, and that is the lifetime published.
	Grace time.Duration
	// ScopeClient is firewall.scope "client": approvals carry the client.
	ScopeClient bool
	// MaxLifetime rejects applied approvals living longer (max_ttl plus
	// grace); 0: no limit.
	MaxLifetime time.Duration
	// Recheck, when set, must approve every message before it is
	// installed: the client in the group, the names and address approved
	// by this node's policy (policy.Engine.Recheck), the ports within those
	// it allows.
	Recheck func(group string, client, dest netip.Addr, names []string) (ports []policy.PortRange, ok bool)
	// Generation, when set, is that of the policy Recheck consults
	// (policy.Engine.Generation). It is read before the check and sent
	// with the allowance, so a reload between the check and the install
	// makes the firewall re-check the allowance under the new policy.
	Generation func() uint64
}

// Node is one egressd's connection to the fleet.
type Node struct {
	opts   Options
	log    *slog.Logger
	m      *Metrics
	nc     *nats.Conn
	js     jetstream.JetStream
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	nonce string
	seq   atomic.Uint64

	publish map[string]bool
	enforce map[string]bool
	confirm []string

	settings atomic.Pointer[Settings]
	kick     chan struct{} // wakes the queue flusher
	pub      *publisher
	app      *applier
}

// ErrNotConfirmed is returned (wrapped) by the Enforcer Wrap returns when
// the nodes of fleet.confirm did not report an approval applied within
// fleet.confirm_timeout; the resolver answers SERVFAIL unless fail_open.
var ErrNotConfirmed = errors.New("fleet: approval not confirmed")

func (o *Options) defaults() error {
	if len(o.Servers) == 0 {
		return errors.New("fleet: no NATS servers")
	}
	if !ValidToken(o.Node) {
		return fmt.Errorf("fleet: node name %q is not a NATS subject token", o.Node)
	}
	for _, g := range append(append([]string{}, o.Publish...), o.Enforce...) {
		if !ValidToken(g) {
			return fmt.Errorf("fleet: group %q is not a NATS subject token", g)
		}
	}
	for _, c := range o.Confirm {
		if c == o.Node {
			// Its own approvals are in its firewall already; it never
			// confirms them.
			return fmt.Errorf("fleet: confirm names this node itself (%s)", c)
		}
	}
	if len(o.Enforce) > 0 && o.Apply == nil {
		return errors.New("fleet: groups to enforce and no firewall to apply them to")
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.ConfirmTimeout <= 0 {
		o.ConfirmTimeout = DefaultConfirmTimeout
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = 250 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Start connects to NATS and starts the roles opts asks for. An
// unreachable NATS is not an error: the node keeps trying in the
// background, publishes what it queued once connected, and an applier
// replays then.
func Start(opts Options) (*Node, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	m := opts.Metrics
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	var nb [6]byte
	_, _ = rand.Read(nb[:])
	n := &Node{
		opts: opts, log: opts.Logger.With("fleet_node", opts.Node), m: m,
		nonce: hex.EncodeToString(nb[:]), kick: make(chan struct{}, 1),
		publish: set(opts.Publish), enforce: set(opts.Enforce), confirm: opts.Confirm,
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.Configure(opts.Settings)
	nopts := []nats.Option{
		nats.Name("egressd " + opts.Node),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opts.ReconnectWait),
		// Nothing is buffered while disconnected: a publish fails at once
		// and the approval waits in the node's own bounded queue.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(*nats.Conn) { n.connected(true) }),
		nats.ReconnectHandler(func(*nats.Conn) { n.connected(true) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			n.connected(false)
			if err != nil {
				n.log.Warn("fleet: disconnected from NATS", "err", err)
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { n.connected(false) }),
	}
	if opts.Credentials != "" {
		nopts = append(nopts, nats.UserCredentials(opts.Credentials))
	}
	if opts.TLSCA != "" {
		nopts = append(nopts, nats.RootCAs(opts.TLSCA))
	}
	if opts.TLSCert != "" || opts.TLSKey != "" {
		nopts = append(nopts, nats.ClientCert(opts.TLSCert, opts.TLSKey))
	}
	nc, err := nats.Connect(strings.Join(opts.Servers, ","), nopts...)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("fleet: %w", err)
	}
	n.nc = nc
	if nc.IsConnected() {
		n.connected(true)
	}
	if n.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		n.cancel()
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if len(n.publish) > 0 {
		if n.pub, err = newPublisher(n); err != nil {
			nc.Close()
			n.cancel()
			return nil, err
		}
		if nc.IsConnected() {
			// The first answers need the stream: make sure of it now
			// rather than queue them while the flusher does.
			ctx, cancel := context.WithTimeout(n.ctx, opts.PublishTimeout*4)
			if err := n.ensureStream(ctx); err != nil {
				n.log.Warn("fleet: approval stream not ready", "stream", opts.Stream, "err", err)
			}
			cancel()
		}
		n.wg.Add(1)
		go n.pub.flushLoop()
	}
	if len(n.enforce) == 0 {
		m.ReplayDone.Set(1) // nothing to replay, as ReplayDone says
	} else {
		n.app = newApplier(n)
		n.wg.Add(1)
		go n.app.run()
	}
	return n, nil
}

func set(names []string) map[string]bool {
	s := map[string]bool{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

func (n *Node) connected(up bool) {
	if up {
		n.m.Connected.Set(1)
		n.wake()
	} else {
		n.m.Connected.Set(0)
	}
}

func (n *Node) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Configure replaces the node's settings; approvals from now on use them.
func (n *Node) Configure(s Settings) { n.settings.Store(&s) }

func (n *Node) cur() *Settings { return n.settings.Load() }

// Connected reports whether the node is connected to a NATS server now.
func (n *Node) Connected() bool { return n.nc.IsConnected() }

// ReplayDone reports whether the approvals live in JetStream when the
// node (re)subscribed are installed; true for a node enforcing nothing.
func (n *Node) ReplayDone() bool { return n.app == nil || n.app.replayed.Load() }

// Problems lists what keeps an agent from being ready: not connected to
// NATS, replay not done. With needConnection false only the replay counts
// (a resolver keeps answering and enforcing without NATS).
func (n *Node) Problems(needConnection bool) []string {
	var p []string
	if needConnection && !n.Connected() {
		p = append(p, "fleet: not connected to NATS")
	}
	if !n.ReplayDone() {
		p = append(p, "fleet: approvals live in JetStream not replayed yet")
	}
	return p
}

// QueueLen is the number of approvals waiting to be published.
func (n *Node) QueueLen() int {
	if n.pub == nil {
		return 0
	}
	return n.pub.queueLen()
}

// Wrap returns an Enforcer that allows through e and then publishes the
// approvals of the groups in Options.Publish. Its Close closes e.
func (n *Node) Wrap(e enforce.Enforcer) enforce.Enforcer {
	if n.pub == nil {
		return e
	}
	return &Publisher{Enforcer: e, p: n.pub}
}

// Close stops the node and closes its NATS connection; approvals still
// queued are not published. It does not close the enforcers.
func (n *Node) Close() error {
	n.cancel()
	if n.app != nil {
		n.app.stop()
	}
	n.nc.Close()
	n.wg.Wait()
	n.m.Connected.Set(0)
	return nil
}

// streamConfig is the stream approvals are stored in: a subject per
// group, per-message TTLs, replicated on three servers in a cluster.
func (n *Node) streamConfig() jetstream.StreamConfig {
	replicas := 1
	if n.nc.ConnectedClusterName() != "" {
		replicas = 3
	}
	return jetstream.StreamConfig{
		Name:        n.opts.Stream,
		Description: "egressd approvals; each message expires with its firewall element",
		Subjects:    []string{n.opts.SubjectPrefix + ".approvals.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    replicas,
		AllowMsgTTL: true,
		MaxMsgSize:  MaxMessageBytes,
		Duplicates:  2 * time.Minute,
	}
}

// ensureStream creates the stream unless it exists, and checks that an
// existing one takes per-message TTLs.
func (n *Node) ensureStream(ctx context.Context) error {
	s, err := n.js.Stream(ctx, n.opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = n.js.CreateStream(ctx, n.streamConfig())
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = n.js.Stream(ctx, n.opts.Stream)
		}
	}
	if err != nil {
		return err
	}
	if !s.CachedInfo().Config.AllowMsgTTL {
		return fmt.Errorf("stream %s does not allow per-message TTLs (allow_msg_ttl)", n.opts.Stream)
	}
	return nil
}

// newID is a message ID unique across nodes and restarts of this one.
func (n *Node) newID() string {
	return fmt.Sprintf("%s-%s-%d", n.opts.Node, n.nonce, n.seq.Add(1))
}
