package blocklists

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

const benchDomains = 2_000_000

var (
	benchListOnce sync.Once
	benchListPath string
	benchListErr  error
)

// benchName is the i-th generated domain: a random label under one of a
// few thousand registrable-looking parents, as in real category lists.
func benchName(r *rand.Rand, i int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	var label [12]byte
	n := 6 + r.IntN(len(label)-5)
	for j := range n {
		label[j] = letters[r.IntN(len(letters))]
	}
	tlds := [...]string{"com", "net", "org", "info", "xyz", "ru", "de"}
	return fmt.Sprintf("%s%d.site%d.%s", label[:n], i%97, r.IntN(5000), tlds[r.IntN(len(tlds))])
}

// benchList writes the generated list once per test binary run.
func benchList(b *testing.B) string {
	benchListOnce.Do(func() {
		dir, err := os.MkdirTemp("", "egressd-bench-")
		if err != nil {
			benchListErr = err
			return
		}
		benchListPath = filepath.Join(dir, "2m.txt")
		f, err := os.Create(benchListPath)
		if err != nil {
			benchListErr = err
			return
		}
		w := bufio.NewWriter(f)
		r := rand.New(rand.NewPCG(7, 7))
		fmt.Fprintln(w, "# generated benchmark list")
		for i := range benchDomains {
			fmt.Fprintln(w, benchName(r, i))
		}
		if err := w.Flush(); err != nil {
			benchListErr = err
		}
		f.Close()
	})
	if benchListErr != nil {
		b.Fatal(benchListErr)
	}
	return benchListPath
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func loadBench(b *testing.B, path string) *Manager {
	m, err := NewManager([]CategorySpec{{Name: "big", Sources: []string{path}}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkLoad2M loads a 2,000,000-domain list and reports the time per
// load and, per domain: the heap the loaded category keeps
// (heap-B/domain), the size of its table (table-B/domain), the part of
// it mapped outside the Go heap (mapped-B/domain, Linux), and the
// highest heap in use while it loaded, parse garbage not yet collected
// included, above what was in use before (peak-heap-B/domain; sampled
// every millisecond from runtime/metrics, so a peak between two samples
// can be missed, never overstated).
func BenchmarkLoad2M(b *testing.B) {
	path := benchList(b)
	b.ResetTimer()
	var perDomain, tablePerDomain, mappedPerDomain, peakHeap float64
	var total time.Duration
	for range b.N {
		b.StopTimer()
		before := heapInUse()
		sampler := startPeakSampler()
		b.StartTimer()
		start := time.Now()
		m := loadBench(b, path)
		total += time.Since(start)
		b.StopTimer()
		heapPeak := sampler.stop()
		after := heapInUse()
		st := m.Stats()["big"]
		domains := st.Domains
		if domains < benchDomains*99/100 {
			b.Fatalf("loaded %d domains, want about %d", domains, benchDomains)
		}
		perDomain = (float64(after) - float64(before)) / float64(domains)
		tablePerDomain = float64(st.Bytes) / float64(domains)
		mappedPerDomain = float64(st.MappedBytes) / float64(domains)
		peakHeap = (float64(heapPeak) - float64(before)) / float64(domains)
		runtime.KeepAlive(m)
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/load")
	b.ReportMetric(perDomain, "heap-B/domain")
	b.ReportMetric(tablePerDomain, "table-B/domain")
	b.ReportMetric(mappedPerDomain, "mapped-B/domain")
	b.ReportMetric(peakHeap, "peak-heap-B/domain")
}

// peakSampler records the largest heap in use (live and not yet
// collected objects) while it runs.
type peakSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	heap uint64
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startPeakSampler() *peakSampler {
	p := &peakSampler{done: make(chan struct{}), heap: heapObjects()}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			p.heap = max(p.heap, heapObjects())
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// stop ends sampling and returns the peak.
func (p *peakSampler) stop() uint64 {
	close(p.done)
	p.wg.Wait()
	return p.heap
}

// BenchmarkRefreshUnchanged2M refreshes the 2M list when nothing changed:
// the source is hashed and compared, and nothing is parsed or rebuilt.
func BenchmarkRefreshUnchanged2M(b *testing.B) {
	m := loadBench(b, benchList(b))
	loaded := m.byName["big"].cur.Load()
	b.ResetTimer()
	for range b.N {
		if err := m.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if m.byName["big"].cur.Load() != loaded {
		b.Fatal("an unchanged refresh rebuilt the lists")
	}
}

// BenchmarkMatch looks up a mix of listed names (below listed entries)
// and unlisted ones against the 2M list.
func BenchmarkMatch(b *testing.B) {
	m := loadBench(b, benchList(b))
	r := rand.New(rand.NewPCG(7, 7)) // the generator of the list: same names
	const nq = 1 << 14
	queries := make([]string, nq)
	for i := range queries {
		listed := benchName(r, i)
		if i%2 == 0 {
			queries[i] = "www." + listed + "."
		} else {
			queries[i] = fmt.Sprintf("cdn.miss%d.example.com.", i)
		}
	}
	hits := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if m.Match(queries[i&(nq-1)]) != 0 {
			hits++
		}
	}
	b.StopTimer()
	if b.N >= nq && (hits < b.N*45/100 || hits > b.N*55/100) {
		b.Fatalf("hits = %d of %d, want about half", hits, b.N)
	}
}

// BenchmarkMatchManyCategories is the common deployment: a dozen small
// categories and one large one.
func BenchmarkMatchManyCategories(b *testing.B) {
	dir := b.TempDir()
	specs := []CategorySpec{{Name: "big", Sources: []string{benchList(b)}}}
	for c := range 12 {
		path := filepath.Join(dir, fmt.Sprintf("c%d.txt", c))
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		for i := range 500 {
			fmt.Fprintf(f, "host%d.cat%d.example\n", i, c)
		}
		f.Close()
		specs = append(specs, CategorySpec{Name: fmt.Sprintf("c%02d", c), Sources: []string{path}})
	}
	m, err := NewManager(specs, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	queries := []string{"www.host1.cat3.example.", "api.service.example.com.", "a.b.c.d.example.net.", "host499.cat11.example"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m.Match(queries[i&3])
	}
}

// BenchmarkRefreshChanged2M refreshes the 2M list after a line was
// added, so every source is parsed and the table rebuilt while the old
// one still serves. It reports the heap in use at the peak of the refresh
// above what the loaded category already held (peak-heap-B/domain): the
// new table plus the parsed entries not yet freed.
func BenchmarkRefreshChanged2M(b *testing.B) {
	src, err := os.ReadFile(benchList(b))
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "2m.txt")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		b.Fatal(err)
	}
	src = nil
	m := loadBench(b, path)
	var peak float64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(f, "added%d.example.org\n", i)
		f.Close()
		before := heapInUse()
		sampler := startPeakSampler()
		b.StartTimer()
		if err := m.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		heapPeak := sampler.stop()
		domains := m.Stats()["big"].Domains
		if domains < benchDomains*99/100+i+1 {
			b.Fatalf("%d domains after the refresh", domains)
		}
		peak = float64(heapPeak-before) / float64(domains)
		b.StartTimer()
	}
	b.ReportMetric(peak, "peak-heap-B/domain")
}
