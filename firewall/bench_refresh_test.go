package firewall

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAllowRefresh measures what an Allow costs its caller, with
// allocations, on a fake kernel that accepts every batch without applying
// it (no root, no netlink: the owner's own work and the wait for it), by
// how long the allowance's element still
// lives when it is asked for again with the same TTL:
//
//   - live: at least TTL + grace/2 left, an index hit.
//   - outlives_ttl: less than TTL + grace/4 but at least TTL left; the
//     element already backs the answer and is due for a refresh (below
//     TTL + grace/4 whatever its spread).
//   - expiring: less than TTL left; the answer must wait for the refresh.
//
// Each round allows refreshPool destinations in one batch (timer
// stopped), moves the clock on by the case's step, then re-allows each
// once.
func BenchmarkAllowRefresh(b *testing.B) {
	spec := allowSpec()
	spec.MaxAddressesPerAnswer = refreshPool
	const ttl = time.Minute
	for _, bc := range []struct {
		name string
		step time.Duration // clock moved on after the round's allow
	}{
		{"live", 0},
		{"outlives_ttl", spec.Grace*3/4 + time.Millisecond},
		{"expiring", spec.Grace + time.Millisecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			n := fakeNFT(b, k, spec, clock, nil)
			k.mu.Lock()
			k.discard = true
			k.mu.Unlock()
			ctx := context.Background()
			ips := make([]netip.Addr, refreshPool)
			for i := range ips {
				ips[i] = seqAddr(i)
			}
			round := func() {
				// Everything of the last round expires, then comes back.
				clock.Advance(2 * (ttl + spec.Grace))
				if err := n.Allow(ctx, Allowance{Group: "servers", IPs: ips, TTL: ttl}); err != nil {
					b.Fatal(err)
				}
				clock.Advance(bc.step)
			}
			startFlushes := n.flushCount()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%refreshPool == 0 {
					b.StopTimer()
					round()
					b.StartTimer()
				}
				if err := n.Allow(ctx, Allowance{Group: "servers", IPs: ips[i%refreshPool : i%refreshPool+1], TTL: ttl}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			rounds := (b.N + refreshPool - 1) / refreshPool
			b.ReportMetric(float64(n.flushCount()-startFlushes-rounds)/float64(b.N), "batches/op")
		})
	}
}

// refreshPool is how many destinations one round of BenchmarkAllowRefresh
// re-allows.
const refreshPool = 1000
