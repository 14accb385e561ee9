package natsproc

import (
	"os"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/netnstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBuild()
	os.Exit(code)
}

func TestClusterNodesRouteToTheOthers(t *testing.T) {
	tests := []struct {
		name  string
		hosts []string
		want  [][]string // routes of each node
	}{
		{name: "single", hosts: []string{"127.0.0.1"}, want: [][]string{nil}},
		{name: "three", hosts: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, want: [][]string{
			{"127.0.0.2:6222", "127.0.0.3:6222"},
			{"127.0.0.1:6222", "127.0.0.3:6222"},
			{"127.0.0.1:6222", "127.0.0.2:6222"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := ClusterNodes(tt.hosts)
			for i, n := range nodes {
				if strings.Join(n.Routes, ",") != strings.Join(tt.want[i], ",") {
					t.Errorf("node %d routes %v, want %v", i, n.Routes, tt.want[i])
				}
				conf := n.Config("/store")
				if hasCluster := strings.Contains(conf, "cluster {"); hasCluster != (len(tt.want[i]) > 0) {
					t.Errorf("node %d: cluster block present=%t with routes %v:\n%s", i, hasCluster, n.Routes, conf)
				}
				if !strings.Contains(conf, `store_dir: "/store"`) {
					t.Errorf("node %d: no JetStream store dir:\n%s", i, conf)
				}
			}
		})
	}
}

// TestClusterInNamespace starts a 3-node JetStream cluster inside a fresh
// namespace; each node's /healthz must report ready (a cluster with a
// meta leader), and a killed node must come back on restart.
func TestClusterInNamespace(t *testing.T) {
	netnstest.Require(t, "nats-server in a namespace")
	ns := netnstest.New(t, "egt-"+netnstest.RandomID()+"-nats")
	procs := RunCluster(t, ns, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"})
	if got := URLs(procs); len(got) != 3 || got[0] != "nats://127.0.0.1:4222" {
		t.Fatalf("URLs = %v", got)
	}
	procs[2].Kill()
	if err := procs[2].Ready(0); err == nil {
		t.Fatal("a killed node reports ready")
	}
	if err := procs[2].Restart(); err != nil {
		t.Fatal(err)
	}
	if err := procs[2].Ready(ReadyLimit); err != nil {
		t.Fatal(err)
	}
}
