package firewall

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestLongNamesFillNoMessagePastAttributeLimit: one batch of many new
// elements whose names are as long as a comment may be must reach the
// kernel whole: every element, with its comment. (256 such elements do
// not fit the 64 KiB one netlink attribute can hold.)
func TestLongNamesFillNoMessagePastAttributeLimit(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	spec.MaxAddressesPerAnswer = elementsPerMessage
	n := startUnwatchedNFT(t, ns, spec, nil)
	name := strings.Repeat(strings.Repeat("x", 61)+".", 5)[:maxComment-1] + "."
	ips := make([]netip.Addr, elementsPerMessage)
	for i := range ips {
		ips[i] = seqAddr(i)
	}
	if err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: ips, TTL: time.Minute, Name: name}); err != nil {
		t.Fatal(err)
	}
	got := elements(t, ns, "egressd", "g_servers_d4")
	if len(got) != len(ips) {
		t.Fatalf("%d elements in the kernel, want %d", len(got), len(ips))
	}
	for _, e := range got {
		if e.Comment != name {
			t.Fatalf("element %x comment %q, want the %d-byte name", e.Key, e.Comment, len(name))
		}
	}
}
