// Package natsproc runs nats-server as a separate process, inside a network
// namespace or on 127.0.0.0/8, for end-to-end tests and benchmarks that
// need NATS where an in-process server cannot be (a namespace other than
// the test's own) or should not be (a cluster measured apart from the
// code under test; see internal/natstest for in-process servers).
//
// The binary is built once per process from the nats-server module
// version the project's go.mod requires (`go build
// github.com/nats-io/nats-server/v2`), or taken from $NATS_SERVER, which
// test/run sets after building it the same way. Debian's nats-server is
// too old for per-message TTLs and is never used.
package natsproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/gobuild"
	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/internal/netnstest"
)

// ReadyLimit bounds how long a server (or the last node of a cluster) may
// take until its /healthz reports JetStream ready.
const ReadyLimit = 30 * time.Second

// StopLimit bounds a graceful stop; after it the process is killed.
const StopLimit = 10 * time.Second

// server is nats-server at the version go.mod requires.
var server = gobuild.Binary{Pkg: "github.com/nats-io/nats-server/v2", Env: "NATS_SERVER"}

// Binary returns the path of nats-server: $NATS_SERVER when set, else a
// binary built (once per process) from the module the project requires.
func Binary() (string, error) { return server.Path() }

// RemoveBuild deletes the binary Binary built, if any; call it from
// TestMain after the tests ran.
func RemoveBuild() { server.Remove() }

// Node describes one server. Host is the address it listens on (client
// port Port, monitoring port HTTPPort, cluster port ClusterPort when
// Routes are given). Routes are the other nodes' host:clusterport.
type Node struct {
	Name        string
	Host        string
	Port        uint16
	HTTPPort    uint16
	ClusterPort uint16
	Cluster     string   // cluster name; "" without routes
	Routes      []string // host:port of the other nodes' cluster listeners
}

// URL is the client URL of the node.
func (n Node) URL() string { return fmt.Sprintf("nats://%s:%d", n.Host, n.Port) }

// Config renders the node's nats-server config with JetStream stored in
// storeDir.
func (n Node) Config(storeDir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\nlisten: \"%s:%d\"\nhttp: \"%s:%d\"\n", n.Name, n.Host, n.Port, n.Host, n.HTTPPort)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 256MB\n}\n", storeDir)
	if len(n.Routes) > 0 {
		fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: \"%s:%d\"\n  routes: [\n", n.Cluster, n.Host, n.ClusterPort)
		for _, r := range n.Routes {
			fmt.Fprintf(&b, "    \"nats-route://%s\"\n", r)
		}
		b.WriteString("  ]\n}\n")
	}
	return b.String()
}

// Proc is one running nats-server.
type Proc struct {
	Node    Node
	ns      netnstest.Namespace
	dir     string
	bin     string
	conf    string
	cmd     *exec.Cmd
	Output  lockedbuf.Buffer
	exited  chan struct{}
	waitErr error
}

// Start runs the node in ns (the zero Namespace: in place) with its config
// and store in dir, and returns once the process runs; use Ready to wait
// for JetStream.
func Start(ns netnstest.Namespace, n Node, dir string) (*Proc, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	store := filepath.Join(dir, "jetstream")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, n.Name+".conf")
	if err := os.WriteFile(conf, []byte(n.Config(store)), 0o644); err != nil {
		return nil, err
	}
	p := &Proc{Node: n, ns: ns, dir: dir, bin: bin, conf: conf}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Proc) start() error {
	// `ip netns exec` execs nats-server in place: the PID is the server's.
	cmd := p.ns.Command(p.bin, "-c", p.conf)
	cmd.Stdout = &p.Output
	cmd.Stderr = &p.Output
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.waitErr = cmd, exited, nil
	go func() {
		err := cmd.Wait()
		p.waitErr = err
		close(exited)
	}()
	return nil
}

// Ready waits until the node's /healthz answers 200 (JetStream enabled
// and, in a cluster, current with the meta leader), at most limit.
func (p *Proc) Ready(limit time.Duration) error {
	url := fmt.Sprintf("http://%s:%d/healthz", p.Node.Host, p.Node.HTTPPort)
	deadline := time.Now().Add(limit)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("nats-server %s exited: %v\n%s", p.Node.Name, p.waitErr, p.Output.String())
		default:
		}
		code, err := p.healthz(url)
		if err == nil && code == http.StatusOK {
			return nil
		}
		last = fmt.Sprintf("status %d, %v", code, err)
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nats-server %s not ready within %s (last: %s)\n%s", p.Node.Name, limit, last, p.Output.String())
}

// healthz asks the monitoring endpoint; the connection is opened inside
// the namespace (net/http dials on goroutines of its own, which Do would
// not cover).
func (p *Proc) healthz(url string) (int, error) {
	resp, err := p.monitor(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Monitor reads path (such as "/jsz?streams=true") from the node's
// monitoring endpoint.
func (p *Proc) Monitor(path string) ([]byte, error) {
	resp, err := p.monitor(fmt.Sprintf("http://%s:%d%s", p.Node.Host, p.Node.HTTPPort, path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("nats-server %s: %s: %s", p.Node.Name, path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func (p *Proc) monitor(url string) (*http.Response, error) {
	c := http.Client{Timeout: time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := p.ns.Do(func() (err error) {
				var d net.Dialer
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
	return c.Get(url)
}

// PID is the server's process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Stop ends the server by its PID: SIGTERM, then SIGKILL after StopLimit.
func (p *Proc) Stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(StopLimit):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("nats-server ignored SIGTERM and was killed")
	}
}

// Kill ends the server at once (SIGKILL), as a crash would.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Restart starts the stopped node again with the same config and store.
func (p *Proc) Restart() error { return p.start() }
