package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// queryKind is one part of the load mix.
type queryKind int

const (
	kindHot     queryKind = iota // allowed A, few names: mostly cache hits
	kindHotAAAA                  // allowed AAAA, few names
	kindCold                     // allowed A, 1 s TTL, many names: cache misses
	kindDenied                   // *.blocked.test: denied by rule
	kindJunkOut                  // random names outside every rule: default deny
	kindJunkIn                   // random allowed names the zone lacks: upstream NXDOMAIN
	kindFlip                     // flipName: answer depends on the live config
	numKinds
)

var kindNames = [numKinds]string{"allowed-hot", "allowed-hot-aaaa", "allowed-cold", "denied", "junk-outside", "junk-inside", "flip"}

// kindWeights is the share of each kind in the mix, in percent.
var kindWeights = [numKinds]int{35, 5, 20, 15, 10, 10, 5}

// Zone layout served by authd (see zoneArgs): h2..h501 keep their answers
// for an hour; from coldFrom on they live one second.
const (
	hotFirst  = 2
	hotCount  = 500
	coldFrom  = 10000
	zoneNames = 5_000_000
)

// zoneArgs are authd's flags for that layout.
func zoneArgs() []string {
	return []string{"-zone", zoneOrigin, "-names", fmt.Sprint(zoneNames), "-ttl", "3600",
		"-cold-from", fmt.Sprint(coldFrom), "-cold-ttl", "1", "-sockets", "1"}
}

// latencyBounds are the upper bounds of the latency buckets reported.
var latencyBounds = [...]time.Duration{10 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond, time.Second}

func latencyBucket(d time.Duration) int {
	for i, b := range latencyBounds {
		if d <= b {
			return i
		}
	}
	return len(latencyBounds)
}

type job struct {
	kind  queryKind
	name  string
	qtype uint16
}

// pick draws the next query of the mix.
func pick(r *rand.Rand) job {
	n := r.IntN(100)
	k := queryKind(0)
	for ; k < numKinds-1; k++ {
		if n < kindWeights[k] {
			break
		}
		n -= kindWeights[k]
	}
	j := job{kind: k, qtype: dns.TypeA}
	switch k {
	case kindHot:
		j.name = fmt.Sprintf("h%d.%s", hotFirst+r.IntN(hotCount), zoneOrigin)
	case kindHotAAAA:
		j.name, j.qtype = fmt.Sprintf("h%d.%s", hotFirst+r.IntN(hotCount), zoneOrigin), dns.TypeAAAA
	case kindCold:
		j.name = fmt.Sprintf("h%d.%s", coldFrom+r.IntN(zoneNames-coldFrom), zoneOrigin)
	case kindDenied:
		j.name = fmt.Sprintf("%s.%s", randomLabel(r, 4+r.IntN(8)), blockedZone)
	case kindJunkOut:
		j.name = fmt.Sprintf("%s.%s.", randomLabel(r, 3+r.IntN(20)), randomLabel(r, 2+r.IntN(4)))
	case kindJunkIn:
		j.name = fmt.Sprintf("x%s.%s", randomLabel(r, 6+r.IntN(10)), zoneOrigin)
	case kindFlip:
		j.name = flipName
	}
	return j
}

func randomLabel(r *rand.Rand, n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	b.WriteByte(letters[r.IntN(26)]) // start with a letter
	for i := 1; i < n; i++ {
		b.WriteByte(letters[r.IntN(len(letters))])
	}
	return b.String()
}

// expected reports whether a reply is what the policy promises for the
// kind; flip answers depend on the config and are not judged.
func expected(k queryKind, qtype uint16, r *dns.Msg) bool {
	switch k {
	case kindHot, kindHotAAAA, kindCold:
		if r.Rcode != dns.RcodeSuccess {
			return false
		}
		for _, rr := range r.Answer {
			if rr.Header().Rrtype == qtype {
				return true
			}
		}
		return false
	case kindDenied, kindJunkOut, kindJunkIn:
		return r.Rcode == dns.RcodeNameError
	}
	return true
}

// kindStats counts what one kind of query got.
type kindStats struct {
	sent, answered, retried, unanswered, wrong uint64
	rcodes                                     map[int]uint64
}

// add counts o's queries into k, whose rcodes map must exist.
func (k *kindStats) add(o *kindStats) {
	k.sent += o.sent
	k.answered += o.answered
	k.retried += o.retried
	k.unanswered += o.unanswered
	k.wrong += o.wrong
	for rc, n := range o.rcodes {
		k.rcodes[rc] += n
	}
}

// loadStats is the client's view of the whole run.
type loadStats struct {
	kinds      [numKinds]kindStats
	udp, tcp   uint64
	reconnects uint64   // TCP connections egressd closed between queries
	notSent    uint64   // jobs the workers could not take in time
	examples   []string // first unanswered or wrong replies
	retries    []string // first queries that needed a second try
	// badFirst and badLast bound the times of the badCount unanswered or
	// unexpected replies, since the load started.
	badFirst, badLast time.Duration
	badCount          uint64
	maxLatency        time.Duration
	latency           [len(latencyBounds) + 1]uint64 // answers per latencyBounds bucket, the last one open
	sampledSets       uint64
}

func newLoadStats() *loadStats {
	s := &loadStats{}
	for i := range s.kinds {
		s.kinds[i].rcodes = map[int]uint64{}
	}
	return s
}

func (s *loadStats) merge(o *loadStats) {
	for i := range s.kinds {
		s.kinds[i].add(&o.kinds[i])
	}
	s.udp += o.udp
	s.reconnects += o.reconnects
	s.tcp += o.tcp
	s.notSent += o.notSent
	s.maxLatency = max(s.maxLatency, o.maxLatency)
	for i, n := range o.latency {
		s.latency[i] += n
	}
	s.sampledSets += o.sampledSets
	if o.badCount > 0 {
		if s.badCount == 0 || o.badFirst < s.badFirst {
			s.badFirst = o.badFirst
		}
		s.badLast = max(s.badLast, o.badLast)
		s.badCount += o.badCount
	}
	s.examples = appendBounded(s.examples, o.examples...)
	s.retries = appendBounded(s.retries, o.retries...)
}

// appendBounded keeps at most maxExamples items.
func appendBounded(list []string, items ...string) []string {
	for _, it := range items {
		if len(list) < maxExamples {
			list = append(list, it)
		}
	}
	return list
}

func (s *loadStats) total() (k kindStats) {
	k.rcodes = map[int]uint64{}
	for i := range s.kinds {
		k.add(&s.kinds[i])
	}
	return k
}

type loadConfig struct {
	qps         int
	duration    time.Duration
	maxQueries  uint64
	udpWorkers  int
	tcpWorkers  int
	tcpPercent  int
	timeout     time.Duration
	sampleEvery uint64    // check one in N allowed answers against the sets
	start       time.Time // examples are stamped relative to it
}

// liveCounters let the progress line read the load while it runs.
type liveCounters struct {
	sent, answered, unanswered atomic.Uint64
}

// runLoad sends the mix at cfg.qps until the duration or query budget is
// spent or ctx ends, and returns what the client saw.
func runLoad(ctx context.Context, cfg loadConfig, topo *topology, checker *setChecker, live *liveCounters) *loadStats {
	udpJobs := make(chan job, cfg.udpWorkers*4)
	tcpJobs := make(chan job, cfg.tcpWorkers*4)
	var sampleSeq atomic.Uint64
	results := make(chan *loadStats, cfg.udpWorkers+cfg.tcpWorkers)
	var wg sync.WaitGroup
	startWorkers := func(n int, network string, jobs <-chan job) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &worker{ex: newExchanger(topo.client, topo.dns, network), cfg: cfg, checker: checker,
					sampleSeq: &sampleSeq, live: live, stats: newLoadStats()}
				defer w.ex.close()
				for j := range jobs {
					if ctx.Err() != nil {
						continue // drain without sending
					}
					w.do(j)
				}
				w.stats.reconnects = w.ex.reconnects
				results <- w.stats
			}()
		}
	}
	startWorkers(cfg.udpWorkers, "udp", udpJobs)
	startWorkers(cfg.tcpWorkers, "tcp", tcpJobs)

	notSent := dispatch(ctx, cfg, udpJobs, tcpJobs)
	close(udpJobs)
	close(tcpJobs)
	wg.Wait()
	close(results)
	total := newLoadStats()
	for r := range results {
		total.merge(r)
	}
	total.notSent = notSent
	return total
}

// dispatch hands out jobs in 10 ms ticks. A job no worker can take
// because all are busy is counted as not sent rather than queued, so the
// rate stays bounded and a stall shows in the figures.
func dispatch(ctx context.Context, cfg loadConfig, udpJobs, tcpJobs chan<- job) (notSent uint64) {
	const tick = 10 * time.Millisecond
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x50a4))
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	start := time.Now()
	end := start.Add(cfg.duration)
	var issued uint64
	for issued < cfg.maxQueries {
		select {
		case <-ctx.Done():
			return notSent
		case now := <-ticker.C:
			if now.After(end) {
				return notSent
			}
			// Catch up to the rate the elapsed time allows.
			due := uint64(now.Sub(start).Seconds() * float64(cfg.qps))
			for ; issued < due && issued < cfg.maxQueries; issued++ {
				j := pick(r)
				ch := udpJobs
				if r.IntN(100) < cfg.tcpPercent {
					ch = tcpJobs
				}
				select {
				case ch <- j:
				default:
					notSent++
				}
			}
		}
	}
	return notSent
}

// worker sends queries one at a time on its own socket.
type worker struct {
	ex        *exchanger
	cfg       loadConfig
	checker   *setChecker
	sampleSeq *atomic.Uint64
	live      *liveCounters
	stats     *loadStats
}

func (w *worker) do(j job) {
	ks := &w.stats.kinds[j.kind]
	ks.sent++
	w.live.sent.Add(1)
	if w.ex.network == "tcp" {
		w.stats.tcp++
	} else {
		w.stats.udp++
	}
	start := time.Now()
	var reply *dns.Msg
	var err error
	for try := 0; try < 2; try++ {
		q := new(dns.Msg)
		q.SetQuestion(j.name, j.qtype)
		q.SetEdns0(1232, false)
		if reply, err = w.ex.exchange(q, w.cfg.timeout); err == nil {
			break
		}
		if try == 0 {
			ks.retried++
			w.stats.retries = appendBounded(w.stats.retries, w.describe(j, "first try: "+err.Error()))
		}
	}
	if err != nil {
		ks.unanswered++
		w.live.unanswered.Add(1)
		w.bad()
		w.stats.examples = appendBounded(w.stats.examples, w.describe(j, err.Error()))
		return
	}
	lat := time.Since(start)
	w.stats.maxLatency = max(w.stats.maxLatency, lat)
	w.stats.latency[latencyBucket(lat)]++
	ks.answered++
	w.live.answered.Add(1)
	ks.rcodes[reply.Rcode]++
	if !expected(j.kind, j.qtype, reply) {
		ks.wrong++
		w.bad()
		w.stats.examples = appendBounded(w.stats.examples, w.describe(j,
			fmt.Sprintf("unexpected %s with %d answers", rcodeName(reply.Rcode), len(reply.Answer))))
		return
	}
	if w.checker != nil && (j.kind == kindHot || j.kind == kindHotAAAA || j.kind == kindCold) {
		if w.sampleSeq.Add(1)%w.cfg.sampleEvery == 0 {
			w.stats.sampledSets++
			w.checker.check(j.name, addresses(reply))
		}
	}
}

// bad notes the time of an unanswered or unexpected reply.
func (w *worker) bad() {
	t := time.Since(w.cfg.start)
	if w.stats.badCount == 0 {
		w.stats.badFirst = t
	}
	w.stats.badLast = t
	w.stats.badCount++
}

// describe stamps what happened to a query with the run's clock.
func (w *worker) describe(j job, what string) string {
	return fmt.Sprintf("t=%.3fs %s %s %s over %s: %s", time.Since(w.cfg.start).Seconds(), kindNames[j.kind], j.name,
		dns.TypeToString[j.qtype], w.ex.network, what)
}
