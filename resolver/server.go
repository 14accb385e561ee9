// Package resolver is egressd's DNS server: it checks every query against
// policy, answers from its cache or the upstream servers, pushes approved
// addresses into the firewall and only then answers the client.
package resolver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/querylog"
	"github.com/egressd/egressd/resolver/upstream"
)

// Policy decides queries. The policy package's Engine satisfies it.
type Policy interface {
	Decide(client netip.Addr, qname string, qtype uint16) policy.Decision
	// DeniesTarget reports whether group may not resolve name, a CNAME
	// target met in an answer, and the decision that says so.
	DeniesTarget(group, name string) (policy.Decision, bool)
	// Generation numbers the policy among those of the process, later
	// ones larger (enforce.Allowance.Generation); zero: not numbered.
	Generation() uint64
}

// QueryLogger records one entry per query. Keep is asked first, so
// entries that sampling or a discarding destination would drop are never
// built; Write must not block for long.
type QueryLogger interface {
	Keep(decision string) bool
	Write(e *querylog.Entry)
}

// Zone forwards queries for a domain and the names below it to its own
// upstream servers (conditional forwarding).
type Zone = upstream.Zone

// Options configures a Server.
type Options struct {
	// Settings are the options Configure can change while the server runs.
	Settings

	Listen    []string      // host:port, each served on UDP and TCP
	Upstreams []string      // HOST:PORT, tls://HOST[:PORT][#NAME] or https://HOST[:PORT]/PATH, tried in order
	Timeout   time.Duration // per upstream attempt
	CacheSize int           // entries; 0 disables the cache
	Mark      uint32        // SO_MARK for upstream sockets when non-zero

	// Bootstrap lists plain DNS servers (IP[:PORT], port 53 by default)
	// that resolve the host names of tls:// and https:// upstreams; IP
	// literals need none.
	Bootstrap []string
	// Zones send queries for a domain and the names below it to their own
	// upstreams; the longest matching zone wins.
	Zones []Zone
	// RootCAs verifies DNS-over-TLS and DNS-over-HTTPS servers; nil uses
	// the system roots.
	RootCAs *x509.CertPool

	// RateLimitIPv4Prefix and RateLimitIPv6Prefix are the prefix lengths
	// that make one client for the rate limit and the in-flight share
	// (0 picks 32 and 64): every address in one IPv6 /64 shares a budget.
	RateLimitIPv4Prefix int
	RateLimitIPv6Prefix int
	// CacheMaxBytes bounds the memory the cached answers take (see
	// entryBytes); 0 picks 64 MiB.
	CacheMaxBytes int64
	// MaxInFlight bounds the queries waiting for an upstream or the
	// firewall at once, MaxInFlightPerClient those of one client (keyed
	// like the rate limit); 0 picks 8192 and 256.
	MaxInFlight          int
	MaxInFlightPerClient int
	// TCP connections from Clients: idle timeout (also for the first
	// query), total and per client address limits (0 picks
	// DefaultTCPIdleTimeout, DefaultTCPMaxConns and
	// DefaultTCPMaxConnsPerClient). Outsiders have a pool of their own.
	TCPIdleTimeout       time.Duration
	TCPMaxConns          int
	TCPMaxConnsPerClient int
	// Encrypted configures DNS over TLS and DNS over HTTPS (encrypted.go).
	Encrypted EncryptedOptions

	Policy   Policy
	Enforcer enforce.Enforcer
	QueryLog QueryLogger
	// Tap, when set, receives copies of client and upstream messages
	// (dnstap).
	Tap     Tap
	Metrics *metrics.Metrics
	Logger  *slog.Logger
}

// Server is a running (or ready to run) egressd DNS server.
type Server struct {
	opts      Options
	log       *slog.Logger
	forwarder Forwarder    // the upstream servers
	cache     *answerCache // nil when disabled
	flights   singleflight.Group
	now       func() time.Time
	probe     bool // probe upstreams for readiness after Start
	// workerIdle is how long a UDP worker waits for another query before
	// it ends; a field so tests can shorten it.
	workerIdle time.Duration

	// cur holds the Settings in force (Configure); configMu serializes
	// Configure. clientKeys says what one client is (rate limit, in-flight
	// share); it does not change.
	cur        atomic.Pointer[current]
	configMu   sync.Mutex
	clientKeys clientKeys

	policy   atomic.Pointer[Policy]
	enforcer atomic.Pointer[enforce.Enforcer]
	ready    atomic.Bool
	inFlight inFlight

	fwDeadline sharedDeadline // contexts for firewall pushes
	handles    metricHandles  // per-query metric series, looked up once
	enc        encrypted      // DNS over TLS and HTTPS (encrypted.go)

	mu         sync.Mutex
	servers    []*dns.Server
	addrs      []net.Addr
	stopProbe  context.CancelFunc
	probeEnded chan struct{}
}

// Defaults used when Options leaves a value zero.
const (
	defaultTimeout  = upstream.DefaultTimeout
	firewallTimeout = 3 * time.Second
	tcpWriteTimeout = 2 * time.Second
	tcpReadTimeout  = 2 * time.Second // outsiders' one query
	maxTCPQueries   = 256
)

// New checks o and builds a Server. Nothing is bound until Start.
func New(o Options) (*Server, error) {
	if o.Policy == nil {
		return nil, errors.New("resolver: no policy")
	}
	if len(o.Upstreams) == 0 {
		return nil, errors.New("resolver: no upstream servers")
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	s := &Server{opts: o, log: o.Logger, now: time.Now, probe: true, workerIdle: udpWorkerIdle}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// Lines a query can cause are limited per message (logBudget).
	s.log = slog.New(newBudgetHandler(s.log.Handler(), func() time.Time { return s.now() }))
	fwd, err := upstream.New(upstream.Options{
		Servers:   o.Upstreams,
		Zones:     o.Zones,
		Bootstrap: o.Bootstrap,
		Timeout:   o.Timeout,
		Mark:      o.Mark,
		RootCAs:   o.RootCAs,
		Metrics:   o.Metrics,
		Logger:    s.log,
		Now:       func() time.Time { return s.now() },
		Answered:  func() { s.ready.Store(true) },
		Tap:       o.Tap,
	})
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	s.forwarder = fwd
	if o.CacheSize > 0 {
		c, err := newAnswerCache(o.CacheSize, o.CacheMaxBytes, o.CacheMaxTTL)
		if err != nil {
			return nil, err
		}
		s.cache = c
	}
	keys := newClientKeys(o.RateLimitIPv4Prefix, o.RateLimitIPv6Prefix)
	s.inFlight.init(o.MaxInFlight, o.MaxInFlightPerClient, keys)
	s.clientKeys = keys
	s.enc.byTransport = newTransportCounters(o.Metrics)
	s.SetCertificate(o.Encrypted.Certificate)
	s.Configure(o.Settings)
	s.SetPolicy(o.Policy)
	s.SetEnforcer(o.Enforcer)
	return s, nil
}

// SetPolicy swaps the policy atomically; queries in flight finish with the
// one they started with.
func (s *Server) SetPolicy(p Policy) { s.policy.Store(&p) }

// SetEnforcer swaps the firewall backend atomically. nil disables pushes.
func (s *Server) SetEnforcer(e enforce.Enforcer) { s.enforcer.Store(&e) }

func (s *Server) currentPolicy() Policy { return *s.policy.Load() }

func (s *Server) currentEnforcer() enforce.Enforcer { return *s.enforcer.Load() }

// Ready reports whether an upstream server has answered at least once.
func (s *Server) Ready() bool { return s.ready.Load() }

// Start binds every listen address on TCP and UDP and starts serving. When
// any bind fails, everything already bound is closed again.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.servers) > 0 {
		return errors.New("resolver: already started")
	}
	enc, err := s.bindEncrypted()
	if err != nil {
		return err
	}
	var servers []*dns.Server
	var addrs []net.Addr
	for _, addr := range s.opts.Listen {
		tcp, udp, err := bindPair(addr)
		if err != nil {
			for _, srv := range servers {
				closeUnstarted(srv)
			}
			enc.close()
			return err
		}
		servers = append(servers, s.udpServer(udp), s.tcpServer(tcp))
		addrs = append(addrs, udp.LocalAddr(), tcp.Addr())
	}
	for i, srv := range servers {
		started, failed := make(chan struct{}), make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Error("dns server stopped", "err", err)
				failed <- err
			}
		}()
		select {
		case <-started:
		case err := <-failed:
			for _, running := range servers[:i] {
				running.Shutdown()
			}
			for _, unstarted := range servers[i:] {
				closeUnstarted(unstarted)
			}
			enc.close()
			return fmt.Errorf("resolver: serve: %w", err)
		}
	}
	s.servers, s.addrs = servers, addrs
	s.serveEncrypted(enc)
	if !s.probe {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	s.stopProbe, s.probeEnded = cancel, ended
	go func() {
		defer close(ended)
		s.probeUpstreams(ctx)
	}()
	return nil
}

func closeUnstarted(srv *dns.Server) {
	if srv.PacketConn != nil {
		srv.PacketConn.Close()
	}
	if srv.Listener != nil {
		srv.Listener.Close()
	}
}

// Addrs returns the bound addresses, UDP and TCP for each listen address.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Shutdown stops all listeners and waits for queries in flight, up to ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers, stopProbe, probeEnded := s.servers, s.stopProbe, s.probeEnded
	s.servers, s.stopProbe, s.probeEnded = nil, nil, nil
	s.mu.Unlock()
	if stopProbe != nil {
		stopProbe()
		select {
		case <-probeEnded:
		case <-ctx.Done():
		}
	}
	var errs []error
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.shutdownEncrypted(ctx); err != nil {
		errs = append(errs, err)
	}
	// Pooled DoT/DoH connections are closed only once no query can use them.
	s.forwarder.CloseIdle()
	return errors.Join(errs...)
}

// seconds converts d to whole seconds for TTL arithmetic, saturating.
func seconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	if s := d / time.Second; s < 1<<32 {
		return uint32(s)
	}
	return 1<<32 - 1
}
