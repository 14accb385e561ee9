package main

import (
	"fmt"
	"strings"
)

// checkInputs are the end-of-run facts that are not in the summary.
type checkInputs struct {
	alive        bool
	pid          int
	exit         error
	cleanExit    bool
	endScrapeErr error
	flapErrs     []string
	setExamples  []string
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
	switch {
	case !m.haveBase:
		add("goroutines bounded", false, "no baseline: run shorter than the warm-up or /metrics failing (%s)", m.lastErr)
		add("RSS bounded", false, "no baseline")
	case in.endScrapeErr != nil:
		add("goroutines bounded", false, "end scrape failed: %v", in.endScrapeErr)
		add("RSS bounded", false, "end scrape failed: %v", in.endScrapeErr)
	default:
		gLimit := m.baseGoroutines + o.goroutineGrow
		add("goroutines bounded", m.lastGoroutines < gLimit, "end %.0f < %.0f (warm-up %.0f + %.0f)", m.lastGoroutines, gLimit, m.baseGoroutines, o.goroutineGrow)
		rLimit := m.baseRSS*o.rssFactor + o.rssSlackMiB*(1<<20)
		add("RSS bounded", m.lastRSS < rLimit, "end %.1f MiB < %.1f MiB (warm-up %.1f MiB × %.1f + %.0f MiB); peak %.1f MiB",
			m.lastRSS/(1<<20), rLimit/(1<<20), m.baseRSS/(1<<20), o.rssFactor, o.rssSlackMiB, m.peakRSS/(1<<20))
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
