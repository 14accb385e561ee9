package main

import (
	"fmt"
	"strings"
	"time"
)

// What egressd may hold once the load has stopped, beyond what it had
// before the load began. The goroutine check allows exactly this, so it
// fails on a leak and not on a busy machine:
//
//   - UDP workers: one per query handed off while none was idle, up to
//     8,192 busy and 1,024 idle (resolver: maxInFlight, maxIdleUDPWorkers).
//     A worker ends after udpWorkerIdle without a query, so none is left
//     once that long has passed since the last query; the end figure is
//     taken then (settleDeadline), not 3 s after the load.
//   - Queries in flight (up to 8,192): each ends within the upstream
//     timeout per server tried, before that wait is over.
//   - TCP connections: one goroutine each, at most [server] tcp_max_conns
//     (soakTCPMaxConns). The load closes its connections when it stops,
//     so this part is normally empty; it is allowed because egressd may
//     hold that many.
//   - DoT and DoH connections: a reader goroutine per pooled connection;
//     the soak's upstreams are plain DNS, so none.
//   - /metrics: the scrape being answered is in the pre-load figure too;
//     one earlier connection may still be closing (net/http: its goroutine
//     and its background reader).
//
// Everything else egressd runs (listeners, the UDP readers, the firewall
// owner, the query log writer, the upstream prober, signal handling) is
// there before the load and does not grow with it; a reload replaces it.
const (
	// udpWorkerIdle is resolver/udpworkers.go's udpWorkerIdle.
	udpWorkerIdle         = 10 * time.Second
	goroutinesPerTCPConn  = 1
	metricsConnGoroutines = 2
	closingMetricsConns   = 1
)

// goroutineBound is the most goroutines egressd may have once idle after
// the load: the pre-load figure plus what its limits let it keep.
func goroutineBound(pre float64, tcpMaxConns int) float64 {
	return pre + float64(tcpMaxConns*goroutinesPerTCPConn+closingMetricsConns*metricsConnGoroutines)
}

// settleDeadline is how long after the load the end figures may wait for
// egressd to be within the bound: every query handed off has ended (the
// upstream timeout for each server), and then every idle UDP worker
// (udpWorkerIdle), with the same again for a machine busy enough to delay
// timers. A healthy egressd is within the bound well before.
func settleDeadline(upstreamTimeout time.Duration, upstreams int) time.Duration {
	return 2 * (udpWorkerIdle + upstreamTimeout*time.Duration(upstreams))
}

// checkInputs are the end-of-run facts that are not in the summary.
type checkInputs struct {
	alive        bool
	pid          int
	exit         error
	cleanExit    bool
	endScrapeErr error
	flapErrs     []string
	setExamples  []string
	image        uint64 // imageBytes of the egressd binary
	imageErr     error
}

// buildChecks turns the run's figures into verdicts.
func buildChecks(o options, s summary, in checkInputs) []check {
	var cs []check
	add := func(name string, ok bool, format string, args ...any) {
		cs = append(cs, check{name: name, status: pass(ok), figures: fmt.Sprintf(format, args...)})
	}

	if in.alive {
		add("egressd stayed up", true, "pid %d running at the end", in.pid)
	} else {
		add("egressd stayed up", false, "pid %d gone: %v", in.pid, in.exit)
	}
	add("clean shutdown", in.cleanExit, "SIGTERM at the end: %s", map[bool]string{true: "exited within 10s", false: "had to be killed"}[in.cleanExit])

	t := s.load.total()
	add("every query answered", t.unanswered <= o.unanswered, "%d of %d unanswered after one retry (budget %d), %d needed a retry",
		t.unanswered, t.sent, o.unanswered, t.retried)
	add("answers follow the policy", t.wrong <= o.wrong, "%d of %d answers not as the policy says (budget %d; SERVFAIL %d)",
		t.wrong, t.answered, o.wrong, t.rcodes[2])
	offered := t.sent + s.load.notSent
	add("load was delivered", float64(s.load.notSent) <= o.notSentPct/100*float64(offered),
		"%d of %d queries not sent because every worker was waiting (limit %.1f%%)", s.load.notSent, offered, o.notSentPct)

	m := s.mon
	gBound := goroutineBound(m.preGoroutines, soakTCPMaxConns)
	switch {
	case !m.havePre:
		add("goroutines bounded", false, "no pre-load figure: /metrics failing (%s)", m.lastErr)
	case in.endScrapeErr != nil:
		add("goroutines bounded", false, "end scrape failed: %v", in.endScrapeErr)
	default:
		add("goroutines bounded", m.lastGoroutines <= gBound,
			"end %.0f ≤ %.0f (before the load %.0f + tcp_max_conns %d × %d + closing /metrics connection %d), %s after the load (UDP workers end after %s idle)",
			m.lastGoroutines, gBound, m.preGoroutines, soakTCPMaxConns, goroutinesPerTCPConn, closingMetricsConns*metricsConnGoroutines, m.settled, udpWorkerIdle)
	}
	switch {
	case m.peakRSS == 0:
		add("RSS bounded", false, "no figure: /metrics failing (%s)", m.lastErr)
	case in.imageErr != nil:
		add("RSS bounded", false, "no bound: %v", in.imageErr)
	default:
		bound := rssBound(o.memoryLimit, in.image, uint64(m.peakMapped))
		add("RSS bounded", m.peakRSS <= float64(bound),
			"peak %.1f MiB ≤ %.1f MiB (memory_limit %.1f + binary image %.1f + mapped lists %.1f + OS pages %d); end %.1f MiB",
			m.peakRSS/(1<<20), float64(bound)/(1<<20), float64(o.memoryLimit)/(1<<20), float64(in.image)/(1<<20),
			m.peakMapped/(1<<20), osAllowance>>20, m.lastRSS/(1<<20))
	}

	if s.setSkip {
		cs = append(cs, check{name: "answers in nftables set", status: "SKIP", figures: "loopback mode: firewall backend none"})
	} else {
		figures := fmt.Sprintf("%d of %d sampled answers (1 in %d allowed) had every address in the set on arrival",
			s.setPassed, s.setPassed+s.setFailed, o.sampleEvery)
		if len(in.setExamples) > 0 {
			figures += "; e.g. " + strings.Join(in.setExamples, "; ")
		}
		add("answers in nftables set", s.setFailed == 0 && s.setPassed > 0, "%s", figures)
	}

	okReloads, broken, brokenKept := 0, 0, 0
	var bad []string
	for _, r := range s.reloads {
		if r.variant == variantBroken {
			broken++
			if r.ok {
				brokenKept++
			}
		}
		if r.ok {
			okReloads++
		} else {
			bad = append(bad, fmt.Sprintf("t=%s %s: %s", r.at, r.variant, r.detail))
		}
	}
	figures := fmt.Sprintf("%d of %d reloads as expected, broken config kept out %d of %d", okReloads, len(s.reloads), brokenKept, broken)
	if len(bad) > 0 {
		figures += "; " + strings.Join(bad, "; ")
	}
	add("config reloads", len(bad) == 0, "%s", figures)

	flapFigures := fmt.Sprintf("%d flaps of the primary upstream", s.flaps)
	if len(in.flapErrs) > 0 {
		flapFigures += "; restart failed: " + strings.Join(in.flapErrs, "; ")
	}
	add("upstream flapping", len(in.flapErrs) == 0, "%s", flapFigures)
	return cs
}
