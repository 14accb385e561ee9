// Package natstest runs NATS servers with JetStream inside a test process:
// one server, or a cluster of several, each on a loopback port with its
// store in a temporary directory, all shut down by t.Cleanup. A server can
// be stopped and started again on the same ports with the same store, so a
// test can take NATS away from a client and give it back.
package natstest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/egressd/egressd/internal/freeport"
	"github.com/egressd/egressd/internal/wait"
)

// ReadyLimit bounds how long a server may take to accept connections, and a
// cluster to elect a JetStream leader with every peer current.
const ReadyLimit = 30 * time.Second

// Server is one in-process NATS server with JetStream.
type Server struct {
	t    testing.TB
	mu   sync.Mutex
	opts server.Options
	srv  *server.Server
}

// Run starts a single JetStream server on a random port of 127.0.0.1.
func Run(t testing.TB) *Server {
	t.Helper()
	return RunWith(t, nil)
}

// RunWith is Run with options of the test's own (users and their
// permissions, say), set by configure before the server starts.
func RunWith(t testing.TB, configure func(*server.Options)) *Server {
	t.Helper()
	s := &Server{t: t, opts: baseOptions(t, "n0")}
	s.opts.Port = server.RANDOM_PORT
	if configure != nil {
		configure(&s.opts)
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func baseOptions(t testing.TB, name string) server.Options {
	return server.Options{
		ServerName:            name,
		Host:                  "127.0.0.1",
		NoLog:                 true,
		NoSigs:                true,
		JetStream:             true,
		StoreDir:              t.TempDir(),
		JetStreamMaxMemory:    64 << 20,
		JetStreamMaxStore:     256 << 20,
		DisableShortFirstPing: true,
	}
}

// start runs the server; on the first start it records the port the
// server chose, so that a restart listens where clients reconnect.
func (s *Server) start() {
	s.t.Helper()
	opts := s.opts // the server keeps and modifies its copy
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("natstest: %s: %v", s.opts.ServerName, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(ReadyLimit) {
		srv.Shutdown()
		s.t.Fatalf("natstest: %s: not accepting connections after %s", s.opts.ServerName, ReadyLimit)
	}
	if s.opts.Port <= 0 {
		s.opts.Port = srv.Addr().(*net.TCPAddr).Port
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// URL is the server's client URL, the same across restarts.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// Name is the server's name in its cluster.
func (s *Server) Name() string { return s.opts.ServerName }

// NATS is the running server, nil while it is stopped.
func (s *Server) NATS() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Running reports whether the server is started and not stopped.
func (s *Server) Running() bool { return s.NATS() != nil }

// Stop shuts the server down and waits until it has; its store stays.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart starts a stopped server again on its port with its store.
func (s *Server) Restart() {
	s.t.Helper()
	if s.Running() {
		s.t.Fatalf("natstest: %s: restart of a running server", s.opts.ServerName)
	}
	s.start()
}

// Cluster is a JetStream cluster of in-process servers joined by routes on
// loopback ports.
type Cluster struct {
	t       testing.TB
	Servers []*Server
}

// RunCluster starts an n-server JetStream cluster and waits until it has a
// meta leader and every server is current.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: cluster of %d servers", n)
	}
	// Routes name each other's cluster ports, and restarts need the same
	// client ports, so both are chosen before any server starts.
	ports, err := freeport.Loopback(2 * n)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	var routes []string
	for i := 0; i < n; i++ {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	c := &Cluster{t: t}
	for i := 0; i < n; i++ {
		opts := baseOptions(t, fmt.Sprintf("n%d", i))
		opts.Port = int(ports[i])
		opts.Cluster.Name = "egressd-test"
		opts.Cluster.Host = "127.0.0.1"
		opts.Cluster.Port = int(ports[n+i])
		opts.Cluster.PoolSize = -1
		opts.Cluster.Compression.Mode = server.CompressionOff
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		c.Servers = append(c.Servers, &Server{t: t, opts: opts})
	}
	t.Cleanup(c.stopAll)
	for _, s := range c.Servers {
		s.start()
	}
	c.WaitReady()
	return c
}

func (c *Cluster) stopAll() {
	for _, s := range c.Servers {
		s.Stop()
	}
}

// URLs are the client URLs of every server, comma-separated as nats.Connect
// takes them.
func (c *Cluster) URLs() string {
	var urls []string
	for _, s := range c.Servers {
		urls = append(urls, s.URL())
	}
	return strings.Join(urls, ",")
}

// WaitReady waits until the running servers have a JetStream meta leader
// that sees every server as a peer and every running server is current.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	ok := wait.Until(ReadyLimit, 20*time.Millisecond, func() bool {
		var leader *server.Server
		for _, s := range c.Servers {
			if srv := s.NATS(); srv != nil && srv.JetStreamIsLeader() {
				leader = srv
			}
		}
		if leader == nil || len(leader.JetStreamClusterPeers()) != len(c.Servers) {
			return false
		}
		for _, s := range c.Servers {
			if srv := s.NATS(); srv != nil && !srv.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	})
	if !ok {
		c.t.Fatalf("natstest: cluster not ready after %s", ReadyLimit)
	}
}

// StreamLeader is the index of the server leading stream in account (the
// global account when empty), or -1 when none does.
func (c *Cluster) StreamLeader(account, stream string) int {
	if account == "" {
		account = server.DEFAULT_GLOBAL_ACCOUNT
	}
	for i, s := range c.Servers {
		if srv := s.NATS(); srv != nil && srv.JetStreamIsStreamLeader(account, stream) {
			return i
		}
	}
	return -1
}

// JetStream connects to the server at url for a test that publishes or
// reads the stream itself; the connection is closed when the test ends.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connecting to NATS at %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("JetStream at %s: %v", url, err)
	}
	return js
}
