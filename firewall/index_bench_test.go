package firewall

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fillIndex puts n elements into a fresh index the way answers do: an
// IPv4 destination each, one origin each, the names shared by the share
// elements of an answer (1: every element has names of its own, as the
// benchmark's one-off names do).
func fillIndex(n, share int, now time.Time) *expiryIndex {
	x := newExpiryIndex()
	var names []string
	for i := range n {
		if i%share == 0 {
			names = []string{fmt.Sprintf("host%d.example.com", i/share), "cdn.example.net"}
		}
		a := seqAddr(i).As4()
		e := element{set: "servers_v4", key: a[:]}
		x.put(e, now.Add(time.Minute))
		x.note(e, origin{names: names})
	}
	return x
}

// BenchmarkIndex100k reports what an expiry index of 100,000 elements
// costs: heap bytes per element (HeapInuse after, minus before, with the
// index live), bytes per element mapped outside the Go heap
// (indexmem.go), and the time of a full collection with it live (the mark
// work the index adds to every GC cycle). In shared16 an answer's names
// are shared by 16 elements; in own each element has names of its own
// (one address an answer, as in test/bench/compare's cold names).
func BenchmarkIndex100k(b *testing.B) {
	for _, share := range []struct {
		name string
		n    int
	}{{"shared16", 16}, {"own", 1}} {
		b.Run(share.name, func(b *testing.B) { benchIndex(b, share.n) })
	}
}

func benchIndex(b *testing.B, share int) {
	const elems = 100_000
	now := time.Now()
	var perElem, mapped, gcNs float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := fillIndex(elems, share, now)
		runtime.GC()
		runtime.ReadMemStats(&after)
		start := time.Now()
		runtime.GC()
		gcNs += float64(time.Since(start).Nanoseconds())
		perElem += float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / elems
		mapped += float64(x.mem.size.Load()) / elems
		runtime.KeepAlive(x)
	}
	b.ReportMetric(perElem/float64(b.N), "heapB/elem")
	b.ReportMetric(mapped/float64(b.N), "mappedB/elem")
	b.ReportMetric(gcNs/float64(b.N)/1e6, "gc-ms")
}

// BenchmarkIndexFresh measures the read path every cache hit takes.
func BenchmarkIndexFresh(b *testing.B) {
	now := time.Now()
	x := fillIndex(100_000, 16, now)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		a := seqAddr(i % 100_000).As4()
		e := element{set: "servers_v4", key: a[:]}
		x.mu.RLock()
		ok := x.lookup(e.set, e.key, e.keyEnd) != nil
		x.mu.RUnlock()
		if !ok {
			b.Fatal("missing")
		}
	}
}

// BenchmarkIndexGrow is the stall one more element costs when it doubles
// the table of an index holding 49,152 elements (three quarters of 65,536
// slots): every query waits for it on a server with one CPU.
func BenchmarkIndexGrow(b *testing.B) {
	now := time.Now()
	for b.Loop() {
		b.StopTimer()
		x := fillIndex(49_152, 16, now)
		a := seqAddr(49_152).As4()
		b.StartTimer()
		x.put(element{set: "servers_v4", key: a[:]}, now.Add(time.Minute))
		b.StopTimer()
		if len(x.table) != 131_072 {
			b.Fatalf("table of %d slots, want the doubling to 131072", len(x.table))
		}
		x.mem.releaseAll()
		b.StartTimer()
	}
}
