package e2e

import (
	"fmt"
	"testing"

	"github.com/egressd/egressd/internal/netnstest"
)

// requireNetns skips the test unless it can create namespaces and load
// nftables rules; with EGRESSD_REQUIRE_NETNS=1 it fails instead.
func requireNetns(t *testing.T) {
	t.Helper()
	netnstest.Require(t, "end-to-end test")
}

// netns is a named network namespace created for one test.
type netns struct {
	netnstest.Namespace
}

// newNetns creates "eg-<id>-<role>" with loopback up and deletes it when
// the test ends.
func newNetns(t *testing.T, id, role string) *netns {
	t.Helper()
	ns := &netns{Namespace: netnstest.New(t, fmt.Sprintf("eg-%s-%s", id, role))}
	// Without duplicate address detection, link-local addresses are usable
	// as soon as a link is up, so neighbour discovery does not stall the
	// first IPv6 connections.
	ns.mustSysctl(t, "net.ipv6.conf.default.accept_dad=0")
	ns.mustSysctl(t, "net.ipv6.conf.all.accept_dad=0")
	return ns
}

func (ns *netns) mustIP(t *testing.T, args ...string) {
	t.Helper()
	if _, err := ns.IP(args...); err != nil {
		t.Fatal(err)
	}
}

func (ns *netns) mustSysctl(t *testing.T, setting string) {
	t.Helper()
	if _, err := ns.Exec("sysctl", "-q", "-w", setting); err != nil {
		t.Fatal(err)
	}
}

// ruleset is the namespace's whole nftables state, for failure reports.
func (ns *netns) ruleset() string {
	out, err := ns.Exec("nft", "list", "ruleset")
	if err != nil {
		return err.Error()
	}
	return out
}
