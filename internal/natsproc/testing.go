package natsproc

import (
	"fmt"
	"testing"

	"github.com/egressd/egressd/internal/netnstest"
)

// Run starts one JetStream server in ns, listening on host (client port
// 4222, monitoring 8222), waits until it is ready and stops it by its PID
// when the test ends; its output is logged if the test failed.
func Run(t testing.TB, ns netnstest.Namespace, host string) *Proc {
	t.Helper()
	return RunCluster(t, ns, []string{host})[0]
}

// RunCluster starts one server per host in ns (3 hosts make a 3-node
// JetStream cluster, each node routing to the others on port 6222),
// waits until every node is ready and stops them when the test ends.
func RunCluster(t testing.TB, ns netnstest.Namespace, hosts []string) []*Proc {
	t.Helper()
	nodes := ClusterNodes(hosts)
	procs := make([]*Proc, 0, len(nodes))
	for _, n := range nodes {
		p, err := Start(ns, n, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		t.Cleanup(func() {
			if err := p.Stop(); err != nil {
				t.Errorf("stopping nats-server %s: %v", p.Node.Name, err)
			}
			if t.Failed() {
				t.Logf("nats-server %s output:\n%s", p.Node.Name, p.Output.String())
			}
		})
	}
	for _, p := range procs {
		if err := p.Ready(ReadyLimit); err != nil {
			t.Fatal(err)
		}
	}
	return procs
}

// ClusterNodes describes one node per host, each routing to all others
// when there is more than one.
func ClusterNodes(hosts []string) []Node {
	nodes := make([]Node, len(hosts))
	for i, h := range hosts {
		n := Node{Name: fmt.Sprintf("n%d", i), Host: h, Port: 4222, HTTPPort: 8222}
		if len(hosts) > 1 {
			n.Cluster, n.ClusterPort = "egressd", 6222
			for j, o := range hosts {
				if j != i {
					n.Routes = append(n.Routes, fmt.Sprintf("%s:%d", o, 6222))
				}
			}
		}
		nodes[i] = n
	}
	return nodes
}

// URLs lists the client URLs of the servers.
func URLs(procs []*Proc) []string {
	var out []string
	for _, p := range procs {
		out = append(out, p.Node.URL())
	}
	return out
}
