package firewall

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/wait"
)

// TestWatcherSocketSkipsOwnChanges: the kernel does not even queue
// notifications of egressd's own batches on the watcher's socket (a
// socket filter on the sending port ids), so a new element costs the
// watcher no wake-up, read or buffer; changes by others still arrive and
// are repaired.
func TestWatcherSocketSkipsOwnChanges(t *testing.T) {
	ns := newTestNS(t)
	n := startNFTWith(t, ns, allowSpec(), nil, Options{VerifyEvery: -1})
	before := n.watch.received.Load()
	allow := func(i int) error {
		return n.Allow(context.Background(), Allowance{Group: "servers", IPs: []netip.Addr{seqAddr(i)}, TTL: time.Minute, Name: "a.example."})
	}
	for i := range 25 {
		if err := allow(i); err != nil {
			t.Fatal(err)
		}
	}
	// A failed batch replaces the connection: the new socket's port id
	// is filtered too.
	failFlushes(n, unix.ENOBUFS)
	if err := allow(25); err == nil {
		t.Fatal("Allow with a failing batch succeeded")
	}
	n.flushHook.Store(nil)
	for i := 25; i < 50; i++ {
		if err := allow(i); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.watch.received.Load() - before; got != 0 {
		t.Errorf("the watcher read %d notifications of egressd's own batches, want 0", got)
	}
	// Another process's change still reaches it, and is repaired.
	ns.exec(t, "nft", "flush", "set", "inet", "egressd", "g_servers_d4")
	if !wait.Until(5*time.Second, time.Millisecond, func() bool {
		return len(elements(t, ns, "egressd", "g_servers_d4")) == 50
	}) {
		t.Fatal("the flushed set was not restored")
	}
	if n.watch.received.Load() == before {
		t.Error("the watcher read no notification of another process's flush")
	}
}
