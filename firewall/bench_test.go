package firewall

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/benchcpu"
)

func benchNFT(b *testing.B) *NFT {
	b.Helper()
	spec := allowSpec()
	// Benchmarks add new destinations for as long as they run.
	spec.MaxAddressesPerAnswer, spec.MaxElementsPerSet, spec.MaxElementsPerClient = 1000, 1<<30, 1<<30
	return benchNFTWith(b, spec)
}

func benchNFTWith(b *testing.B, spec Spec) *NFT {
	b.Helper()
	ns := newTestNS(b)
	n, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Close() })
	return n
}

// seqAddr maps a counter to a distinct address in 10.0.0.0/8.
func seqAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// BenchmarkAllowConcurrent1000 measures throughput: 1000 callers each
// allow one new destination at the same time, as under a burst of queries.
func BenchmarkAllowConcurrent1000(b *testing.B) {
	n := benchNFT(b)
	const callers = 1000
	ctx := context.Background()
	next := 0
	startFlushes := n.flushCount()
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for range callers {
			ip := seqAddr(next)
			next++
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.Allow(ctx, Allowance{Group: "servers", IPs: []netip.Addr{ip}, TTL: time.Minute}); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(callers*b.N)/b.Elapsed().Seconds(), "elements/s")
	b.ReportMetric(float64(n.flushCount()-startFlushes)/float64(b.N), "batches/1000")
}

// BenchmarkAllowOneAllowance1000IPs measures one allowance carrying 1000
// addresses: the cost of the kernel work alone, in one batch.
func BenchmarkAllowOneAllowance1000IPs(b *testing.B) {
	n := benchNFT(b)
	ctx := context.Background()
	next := 0
	b.ResetTimer()
	for range b.N {
		ips := make([]netip.Addr, 1000)
		for i := range ips {
			ips[i] = seqAddr(next)
			next++
		}
		if err := n.Allow(ctx, Allowance{Group: "servers", IPs: ips, TTL: time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "elements/s")
}

// BenchmarkAllowLatency compares one caller allowing a new destination
// (one netlink round trip) with re-allowing a fresh one (index hit).
func BenchmarkAllowLatency(b *testing.B) {
	ctx := context.Background()
	b.Run("fresh_element", func(b *testing.B) {
		n := benchNFT(b)
		b.ResetTimer()
		for i := range b.N {
			if err := n.Allow(ctx, Allowance{Group: "servers", IPs: []netip.Addr{seqAddr(i)}, TTL: time.Minute}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("index_hit", func(b *testing.B) {
		n := benchNFT(b)
		a := Allowance{Group: "servers", IPs: []netip.Addr{seqAddr(1)}, TTL: time.Minute}
		if err := n.Allow(ctx, a); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if err := n.Allow(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAllowFresh re-allows hot destinations that are all still live,
// from several goroutines at once, as a resolver answering cached names
// does: such an Allow should neither wait for the owner goroutine nor
// allocate. TTLs and grace are those of a typical deployment (max_ttl 5m,
// grace 30s): elements stay fresh for 15s of real time, longer than a run.
func BenchmarkAllowFresh(b *testing.B) {
	spec := allowSpec()
	spec.Grace = 30 * time.Second
	n := benchNFTWith(b, spec)
	ctx := context.Background()
	const hot = 1000
	allowances := make([]Allowance, hot)
	for i := range allowances {
		allowances[i] = Allowance{Group: "servers", Client: netip.MustParseAddr("10.1.0.5"), IPs: []netip.Addr{seqAddr(i)}, TTL: 5 * time.Minute,
			Name: "www.example.com.", Targets: []string{"cdn.example.net."}}
		if err := n.Allow(ctx, allowances[i]); err != nil {
			b.Fatal(err)
		}
	}
	startFlushes := n.flushCount()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := n.Allow(ctx, allowances[i%hot]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	// Every element was fresh, so nothing may have reached the kernel.
	got := n.flushCount() - startFlushes
	b.ReportMetric(float64(got), "batches")
	if got != 0 {
		b.Errorf("%d netlink batches for fresh elements, want 0", got)
	}
}

// BenchmarkAllowNewElement is one caller allowing a destination the
// kernel does not have yet, with the query name as its comment: one
// netlink batch of one element, as on a cache miss. library sends it
// through google/nftables, lean through elemBatch; the _watched cases
// also run the change watcher, as egressd does. user-ns/op and
// sys-ns/op split the CPU time: Go (building, encoding, acknowledgement
// parsing, the owner round trip) and the kernel (the batch is applied
// inside sendmsg).
func BenchmarkAllowNewElement(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name    string
		library bool
		watch   bool
	}{{"library", true, false}, {"lean", false, false}, {"library_watched", true, true}, {"lean_watched", false, true}} {
		b.Run(bc.name, func(b *testing.B) {
			spec := allowSpec()
			spec.MaxElementsPerSet, spec.MaxElementsPerClient = 1<<30, 1<<30
			ns := newTestNS(b)
			n, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger, NoWatch: !bc.watch, VerifyEvery: -1, libraryElements: bc.library})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = n.Close() })
			client := netip.MustParseAddr("10.1.0.5")
			i := 0
			b.ReportAllocs()
			stop := benchcpu.Start(b)
			for b.Loop() {
				a := Allowance{Group: "servers", Client: client, IPs: []netip.Addr{seqAddr(i)}, TTL: time.Minute, Name: "push.example.com."}
				if err := n.Allow(ctx, a); err != nil {
					b.Fatal(err)
				}
				i++
			}
			stop()
		})
	}
}
