package firewall

import (
	"context"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/raceflag"
)

// resolverFrames is the stack the resolver's UDP worker uses above Allow
// (the worker loop, serve, resolve, push: about 1.2 KB in go1.26), with
// some room to spare.
const resolverFrames = 1536

// workerStack is the stack size a UDP worker should keep: a goroutine
// whose deepest call needs more than this (less the runtime's guard of
// about 900 bytes) doubles its stack to 16 KiB, and a burst of misses
// leaves hundreds of them.
const workerStack = 8 << 10

// TestAllowFitsWorkerStack: a caller that finds the firewall idle serves
// its batch on its own stack (submit, combine, serve, applyAllows,
// sendPlan, the netlink write). Under the resolver's frames that must
// still fit a worker's 8 KiB stack. Each caller runs on a fresh goroutine
// and stays parked afterwards, so the stack memory the callers hold,
// divided among them, is the size each one's stack grew to.
func TestAllowFitsWorkerStack(t *testing.T) {
	if raceflag.Enabled || testing.CoverMode() != "" {
		t.Skip("instrumented builds have larger frames and stack guards")
	}
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	ctx := context.Background()
	// Warm up: the first batch sizes the scratch lists and the index.
	if err := n.Allow(ctx, Allowance{Group: "servers", IPs: []netip.Addr{seqAddr(1 << 20)}, TTL: time.Minute, Name: "warm.example."}); err != nil {
		t.Fatal(err)
	}

	const callers = 64
	park := make(chan struct{})
	defer close(park)
	// The runtime may start goroutines with more than its minimum stack
	// (it adapts to the average it saw): what a goroutine doing nothing
	// holds is the baseline.
	idle := stackPerGoroutine(t, callers, park, func(int) error { return nil })
	if idle >= workerStack {
		t.Skipf("goroutines start with %d bytes of stack here: 8 and 16 KiB cannot be told apart", idle)
	}
	per := stackPerGoroutine(t, callers, park, func(i int) error {
		a := Allowance{Group: "servers", IPs: []netip.Addr{seqAddr(i)}, TTL: time.Minute, Name: "stack.example."}
		var err error
		useStack(resolverFrames, func() { err = n.Allow(ctx, a) })
		return err
	})
	if got := elements(t, ns, "egressd", "g_servers_d4"); len(got) != callers+1 {
		t.Fatalf("%d elements in the set, want %d", len(got), callers+1)
	}
	t.Logf("stack per caller: %d bytes (an idle goroutine: %d)", per, idle)
	// Stacks double: anything nearer 16 KiB than 8 is a grown stack
	// (other goroutines growing meanwhile move the average a little).
	if per > workerStack*3/2 {
		t.Errorf("each caller's stack grew to about %d bytes, more than %d: the path under Allow needs more than a worker can give it", per, workerStack)
	}
}

// stackPerGoroutine runs f(0) ... f(n-1), one after the other, each on a
// goroutine of its own that then stays parked until park is closed, and
// returns the stack memory those goroutines hold, divided among them. An
// error from f fails the test.
func stackPerGoroutine(t *testing.T, n int, park chan struct{}, f func(i int) error) int64 {
	t.Helper()
	errs := make(chan error)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		go func() {
			errs <- f(i)
			<-park
		}()
		// One at a time: each caller finds the firewall idle.
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	return (int64(after.StackInuse) - int64(before.StackInuse)) / int64(n)
}

// useStack calls f with about n bytes of this goroutine's stack in use
// by frames above it.
//
//go:noinline
func useStack(n int, f func()) {
	var pad [256]byte
	pad[n&255] = byte(n)
	if n <= len(pad) {
		f()
	} else {
		useStack(n-len(pad), f)
	}
	stackSink += pad[(n+1)&255]
}

var stackSink byte
