package nflog

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/internal/netnstest"
	"golang.org/x/sys/unix"
)

// TestReadsDropsOfRenderedRules installs the ruleset firewall.Render makes
// with drop events to NFLOG in a namespace, lets a TCP connect be dropped
// by it, and reads the drop as an event with the group's prefix.
func TestReadsDropsOfRenderedRules(t *testing.T) {
	netnstest.Require(t, t.Name())
	ns := netnstest.New(t, "egnflog-"+netnstest.RandomID())
	peer := netnstest.New(t, "egnflogp-"+netnstest.RandomID())
	if err := netnstest.Veth(ns, "v0", peer, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := ns.AddAddrs("v0", "10.200.0.1/24"); err != nil {
		t.Fatal(err)
	}
	const group = 7
	spec := firewall.Spec{
		Table: "egressd", Hooks: []string{firewall.HookOutput},
		DropEvents: firewall.DropEventsNFLOG, NFLOGGroup: group,
		Groups: []firewall.GroupSpec{{Name: "host", Clients: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/24")}}},
	}
	if out, err := ns.ExecInput([]byte(firewall.Render(spec)), "nft", "-f", "-"); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	r, err := Open(Config{Group: group, ReadBuffer: 1 << 20, NetNS: ns.FD(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// The SYN is dropped and logged when it is sent; the connect itself
	// can only time out.
	err = ns.Do(func() error {
		c, err := net.DialTimeout("tcp", "10.200.0.9:8081", 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Failure bound only: the event was queued before the connect returned.
	if err := r.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	evs, err := r.Read()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	ev := evs[0]
	want := Event{
		Prefix: "egressd drop host: ", Time: ev.Time,
		Src: netip.MustParseAddr("10.200.0.1"), Dst: netip.MustParseAddr("10.200.0.9"),
		Proto: unix.IPPROTO_TCP, Sport: ev.Sport, Dport: 8081,
	}
	if ev != want {
		t.Errorf("event = %+v, want %+v", ev, want)
	}
	if ev.Time.IsZero() || ev.Sport == 0 {
		t.Errorf("event without time or source port: %+v", ev)
	}
	if r.Lost() != 0 {
		t.Errorf("Lost = %d, want 0", r.Lost())
	}
}
