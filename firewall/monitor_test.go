package firewall

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRefreshDeletesAndReAdds watches the kernel's element events to show
// that a refresh really deletes and re-adds the element in one batch; on
// kernels before 6.12 re-adding alone would keep the old timeout.
func TestRefreshDeletesAndReAdds(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	n := startNFT(t, ns, allowSpec(), clock)
	a := Allowance{Group: "servers", IPs: addrs("192.0.2.70"), TTL: 10 * time.Second}
	mustAllow(t, n, a)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	mon := exec.CommandContext(ctx, "ip", "netns", "exec", ns.name, "nft", "monitor", "elements")
	mon.Stdout = &out
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the monitor subscribe

	clock.Advance(5 * time.Second)
	a.TTL = 30 * time.Second
	mustAllow(t, n, a)
	time.Sleep(300 * time.Millisecond)
	cancel()
	_ = mon.Wait()

	events := strings.Split(strings.TrimSpace(out.String()), "\n")
	del, readd := -1, -1
	for i, ev := range events {
		if !strings.Contains(ev, "g_servers_d4") || !strings.Contains(ev, "192.0.2.70") {
			continue
		}
		if strings.HasPrefix(ev, "delete element") && del < 0 {
			del = i
		}
		if strings.HasPrefix(ev, "add element") && del >= 0 && i > del {
			readd = i
		}
	}
	if del < 0 || readd < 0 {
		t.Fatalf("want a delete then an add of the element, got events:\n%s", out.String())
	}
}
