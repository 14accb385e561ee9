package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/egressd/egressd/test/internal/netnstest"
)

// requireNetns skips the test unless it can create namespaces and load
// nftables rules; with EGRESSD_REQUIRE_NETNS=1 it fails instead.
func requireNetns(t *testing.T) {
	t.Helper()
	missing := netnstest.Missing()
	if len(missing) == 0 {
		return
	}
	msg := "end-to-end test needs network namespaces and nftables: " + strings.Join(missing, "; ")
	if os.Getenv("EGRESSD_REQUIRE_NETNS") == "1" {
		t.Fatal(msg + " (EGRESSD_REQUIRE_NETNS=1)")
	}
	t.Skip(msg)
}

// netns is a named network namespace created for one test.
type netns struct {
	netnstest.Namespace
}

// uniqueID keeps namespace names apart across parallel tests and runs.
func uniqueID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newNetns creates "eg-<id>-<role>" with loopback up and deletes it when
// the test ends.
func newNetns(t *testing.T, id, role string) *netns {
	t.Helper()
	created, err := netnstest.Create(fmt.Sprintf("eg-%s-%s", id, role))
	if created.Name != "" {
		t.Cleanup(func() {
			if err := created.Delete(); err != nil {
				t.Errorf("removing namespace: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	ns := &netns{Namespace: created}
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
