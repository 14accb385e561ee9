package resolver

import (
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/metrics"
)

// bigTXT returns TXT records owned by name whose RDATA adds up to about
// size bytes of random text, so name compression saves nothing.
func bigTXT(name string, size int, rng *rand.Rand) []dns.RR {
	const chunk = 250
	var rrs []dns.RR
	for size > 0 {
		var b strings.Builder
		for range min(chunk, size) {
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
		rrs = append(rrs, &dns.TXT{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 3600},
			Txt: []string{b.String()},
		})
		size -= chunk
	}
	return rrs
}

// bigTXTUpstream answers every TXT query with about size bytes: over UDP
// truncated when that is more than the client asked for, as a real server
// would, and whole over TCP.
func bigTXTUpstream(t testing.TB, size int) *testUpstream {
	rng := rand.New(rand.NewPCG(1, 2))
	return startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Compress = true // 60 KB of records fit 64 KiB only with compressed owner names
		if udp && size > advertisedUDPSize {
			m.Truncated = true
		} else {
			m.Answer = bigTXT(r.Question[0].Name, size, rng)
		}
		w.WriteMsg(m)
	})
}

// heapInUse is the live heap after a full collection (twice, so sync.Pool
// victims are gone too).
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// serverHeapAllowance is what a test server may hold beyond its cache
// after serving the queries of TestCacheBytesBound: upstream connections,
// grown buffers, health state. None of it grows with the answers cached.
const serverHeapAllowance = 512 << 10

// A client that fills the cache with random-name answers grows the heap by
// at most cache.max_bytes plus serverHeapAllowance, and the cache's
// accounted size never goes over max_bytes. Dropping the cache frees no
// more than it accounted for, so the accounting is an upper bound of what
// the entries really hold, for large answers and small ones.
func TestCacheBytesBound(t *testing.T) {
	for _, tt := range []struct {
		name       string
		maxBytes   int64
		answerSize int
	}{
		{"60 KB TXT answers", 4 << 20, 60_000},
		{"100 byte TXT answers", 1 << 20, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := bigTXTUpstream(t, tt.answerSize)
			m := metrics.New()
			// The upstream is in-process and always answers; a 60 KB answer
			// over TCP under the race detector on a busy machine can take
			// longer than newEnv's 500 ms, which this test is not about.
			env := newEnv(t, Options{Upstreams: []string{up.addr}, Timeout: 30 * time.Second, CacheSize: 100000, CacheMaxBytes: tt.maxBytes, Enforcer: nopEnforcer{}, QueryLog: nopLog{}, Metrics: m})
			client := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
			serve := func(name string) {
				w := fakeWriter(client)
				env.srv.ServeDNS(w, question(name, dns.TypeTXT))
				var resp dns.Msg
				if err := resp.Unpack(w.Out); err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
					t.Fatalf("%s: %v (%v)", name, resp.MsgHdr, err)
				}
			}
			serve("warm-up.big.example.") // upstream connections, buffers
			env.srv.cache.purge()

			before := heapInUse()
			fill := 3 * tt.maxBytes / entryBytes(cacheKey{name: "r0-0123456789abcdef.big.example."}, &answer{wire: make([]byte, tt.answerSize)})
			for i := range fill {
				serve(fmt.Sprintf("r%d-%016x.big.example.", i, rand.Uint64()))
				if b := env.srv.cache.bytes(); b > tt.maxBytes {
					t.Fatalf("after %d answers the cache accounts %d bytes, over max_bytes %d", i+1, b, tt.maxBytes)
				}
			}
			up.Forget() // the test upstream's copy of every query
			filled := heapInUse()
			entries, accounted := env.srv.cache.len(), env.srv.cache.bytes()
			growth := filled - before
			env.srv.cache = nil // the whole cache, its index included
			freed := filled - heapInUse()
			t.Logf("%d answers: %d cached, %d bytes accounted, heap grew %d, dropping the cache freed %d (max_bytes %d)",
				fill, entries, accounted, growth, freed, tt.maxBytes)
			if g := testutil.ToFloat64(m.CacheBytes); g != float64(accounted) {
				t.Errorf("egressd_cache_bytes = %v, want %d", g, accounted)
			}
			if int64(entries) >= fill {
				t.Errorf("all %d answers stayed cached; the test did not fill the cache", fill)
			}
			if bound := tt.maxBytes + serverHeapAllowance; growth > bound {
				t.Errorf("heap grew %d bytes, over max_bytes + allowance = %d", growth, bound)
			}
			// What the cache's fixed parts (the LRU's map and list heads) and
			// the runtime free at the same moment is no entry's; it is a few
			// KiB, far below one 60 KB answer or 1% of max_bytes.
			const unrelatedFree = 64 << 10
			if freed > accounted+unrelatedFree {
				t.Errorf("dropping the cache freed %d bytes, more than the %d it accounted (+%d unrelated)", freed, accounted, unrelatedFree)
			}
		})
	}
}

// The accounted size follows every way an entry comes and goes: added,
// replaced, expired, evicted by bytes or by count; an answer larger than
// the whole bound is not cached.
func TestAnswerCacheAccounting(t *testing.T) {
	now := time.Unix(1000, 0)
	ans := func(size int, ttl uint32) *answer { return &answer{wire: make([]byte, size), cacheTTL: ttl} }
	key := func(name string) cacheKey { return cacheKey{name: name, qtype: dns.TypeTXT, qclass: dns.ClassINET} }
	size := func(name string, a *answer) int64 { return entryBytes(key(name), a) }
	small, big := ans(1000, 60), ans(40_000, 60)
	maxBytes := 2*size("a.", big) + size("a.", small)

	for _, tt := range []struct {
		name      string
		entries   int
		steps     func(c *answerCache)
		wantKeys  []string
		wantBytes int64
	}{
		{"added", 10, func(c *answerCache) {
			c.put(key("a."), small, now)
			c.put(key("b."), big, now)
		}, []string{"a.", "b."}, size("a.", small) + size("b.", big)},
		{"replaced", 10, func(c *answerCache) {
			c.put(key("a."), big, now)
			c.put(key("a."), small, now)
		}, []string{"a."}, size("a.", small)},
		{"expired and removed on lookup", 10, func(c *answerCache) {
			c.put(key("a."), small, now)
			c.put(key("b."), small, now)
			c.get(key("a."), now.Add(time.Hour))
		}, []string{"b."}, size("b.", small)},
		{"least recently used evicted by bytes", 10, func(c *answerCache) {
			c.put(key("a."), big, now)
			c.put(key("b."), big, now)
			c.get(key("a."), now)
			c.put(key("c."), big, now)
		}, []string{"a.", "c."}, 2 * size("a.", big)},
		{"evicted by count", 2, func(c *answerCache) {
			c.put(key("a."), small, now)
			c.put(key("b."), small, now)
			c.put(key("c."), small, now)
		}, []string{"b.", "c."}, 2 * size("a.", small)},
		{"larger than the bound: not cached", 10, func(c *answerCache) {
			c.put(key("a."), small, now)
			if c.put(key("huge."), ans(int(maxBytes), 60), now) {
				t.Error("an answer over max_bytes was cached")
			}
		}, []string{"a."}, size("a.", small)},
		{"slack of a packed answer trimmed", 10, func(c *answerCache) {
			padded := &answer{wire: make([]byte, 1000, 4000), cacheTTL: 60}
			c.put(key("a."), padded, now)
			if got, _, _ := c.get(key("a."), now); cap(got.wire) != 1000 || cap(padded.wire) != 4000 {
				t.Errorf("cached capacity %d, shared answer's %d; want 1000 and 4000 untouched", cap(got.wire), cap(padded.wire))
			}
		}, []string{"a."}, size("a.", small)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newAnswerCache(tt.entries, maxBytes, 0)
			if err != nil {
				t.Fatal(err)
			}
			tt.steps(c)
			var got []string
			for _, k := range c.lru.Keys() {
				got = append(got, k.name)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.wantKeys) {
				t.Errorf("cached %v, want %v", got, tt.wantKeys)
			}
			if b := c.bytes(); b != tt.wantBytes {
				t.Errorf("accounted %d bytes, want %d", b, tt.wantBytes)
			}
		})
	}
}
