package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"
)

// check is one pass/fail verdict with the figures behind it.
type check struct {
	name    string
	status  string // PASS, FAIL or SKIP
	figures string
}

func pass(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func printChecks(w io.Writer, checks []check) (failed int) {
	fmt.Fprintln(w, "\nChecks")
	for _, c := range checks {
		fmt.Fprintf(w, "  %s  %-28s %s\n", c.status, c.name, c.figures)
		if c.status == "FAIL" {
			failed++
		}
	}
	return failed
}

// summary is everything the final table shows.
type summary struct {
	loadavg   string
	soakCPU   float64 // CPU seconds the soak program itself used
	seconds   float64 // wall time from the first to the last scrape
	mode      string
	elapsed   string
	load      *loadStats
	reloads   []reloadResult
	flaps     int
	mon       monitorFigures
	setPassed int
	setFailed int
	setSkip   bool
}

func printSummary(w io.Writer, s summary) {
	fmt.Fprintf(w, "\nSummary (%s, %s)\n", s.mode, s.elapsed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	rcodes := usedRcodes(s.load)
	header := []string{"kind", "sent", "answered", "retried", "unanswered", "wrong"}
	for _, rc := range rcodes {
		header = append(header, rcodeName(rc))
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	row := func(name string, k kindStats) {
		cells := []string{name, fmt.Sprint(k.sent), fmt.Sprint(k.answered), fmt.Sprint(k.retried), fmt.Sprint(k.unanswered), fmt.Sprint(k.wrong)}
		for _, rc := range rcodes {
			cells = append(cells, fmt.Sprint(k.rcodes[rc]))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	for i, k := range s.load.kinds {
		row(kindNames[i], k)
	}
	row("total", s.load.total())
	tw.Flush()

	okReloads, failedReloads := 0, 0
	for _, r := range s.reloads {
		if r.ok {
			okReloads++
		} else {
			failedReloads++
		}
	}
	sets := fmt.Sprintf("%d passed, %d failed", s.setPassed, s.setFailed)
	if s.setSkip {
		sets = "skipped (no nftables in loopback mode)"
	}
	lines := [][2]string{
		{"transport", fmt.Sprintf("udp %d, tcp %d (%d resent after egressd closed the connection), not sent (workers busy) %d",
			s.load.udp, s.load.tcp, s.load.reconnects, s.load.notSent)},
		{"latency", latencyLine(s.load)},
		{"reloads", fmt.Sprintf("%d ok, %d failed (broken config offered %d time(s))", okReloads, failedReloads, countBroken(s.reloads))},
		{"upstream flaps", fmt.Sprint(s.flaps)},
		{"peak RSS", fmt.Sprintf("%.1f MiB (after warm-up %.1f MiB, end %.1f MiB)", s.mon.peakRSS/(1<<20), s.mon.baseRSS/(1<<20), s.mon.lastRSS/(1<<20))},
		{"goroutines", fmt.Sprintf("before the load %.0f, after warm-up %.0f, peak %.0f, end %.0f (%s after the load)", s.mon.preGoroutines, s.mon.baseGoroutines, s.mon.peakGoroutines, s.mon.lastGoroutines, s.mon.settled)},
		{"set presence", sets},
		{"bad answers", badWindow(s.load)},
		{"machine load", s.loadavg},
		{"CPU", fmt.Sprintf("egressd %.1f s (%.0f%% of one CPU), soak client %.1f s, over %.0f s", s.mon.cpuSeconds,
			100*s.mon.cpuSeconds/max(s.seconds, 1), s.soakCPU, s.seconds)},
		{"metrics scrapes", fmt.Sprintf("%d (%d failed)", s.mon.scrapes, s.mon.failures)},
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  %-16s %s\n", l[0], l[1])
	}
	if len(s.reloads) > 0 {
		fmt.Fprintln(w, "  reload log:")
		for _, r := range s.reloads {
			fmt.Fprintf(w, "    t=%-5s config %-6s %s  %s\n", r.at, r.variant, pass(r.ok), r.detail)
		}
	}
}

func countBroken(rs []reloadResult) int {
	n := 0
	for _, r := range rs {
		if r.variant == variantBroken {
			n++
		}
	}
	return n
}

// usedRcodes lists the rcodes seen, NOERROR and NXDOMAIN always.
func usedRcodes(s *loadStats) []int {
	seen := map[int]bool{dns.RcodeSuccess: true, dns.RcodeNameError: true}
	for _, k := range s.kinds {
		for rc := range k.rcodes {
			seen[rc] = true
		}
	}
	var out []int
	for rc := range seen {
		out = append(out, rc)
	}
	sort.Ints(out)
	return out
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// latencyLine lists answers per latency bucket, e.g. "≤10ms 5000, ≤100ms 12".
func latencyLine(l *loadStats) string {
	var parts []string
	for i, n := range l.latency {
		label := ">" + latencyBounds[len(latencyBounds)-1].String()
		if i < len(latencyBounds) {
			label = "≤" + latencyBounds[i].String()
		}
		parts = append(parts, fmt.Sprintf("%s %d", label, n))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; max %s (first try to answer, retries included)", l.maxLatency.Round(time.Millisecond))
}

// badWindow says when unanswered or unexpected replies happened.
func badWindow(l *loadStats) string {
	if l.badCount == 0 {
		return "none"
	}
	return fmt.Sprintf("%d unanswered or unexpected, between t=%.3fs and t=%.3fs", l.badCount, l.badFirst.Seconds(), l.badLast.Seconds())
}
