package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
	"github.com/miekg/dns"
)

// upstreams runs the two authoritative servers; the first one flaps.
type upstreams struct {
	ns     netnstest.Namespace
	addrs  []netip.AddrPort
	bin    string
	logDir string

	mu     sync.Mutex
	procs  []*proc
	flaps  int // times the primary was stopped and started again
	errs   []string
	events []string  // when the primary went down and came back
	t0     time.Time // the run's start, for event times
}

func (u *upstreams) event(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.events = append(u.events, fmt.Sprintf("t=%.3fs ", time.Since(u.t0).Seconds())+fmt.Sprintf(format, args...))
}

func (u *upstreams) start(i int) error {
	p, err := startProc(u.ns, fmt.Sprintf("authd%d", i+1), u.logDir, u.bin,
		append([]string{"-listen", u.addrs[i].String()}, zoneArgs()...)...)
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.procs[i] = p
	u.mu.Unlock()
	if err := waitAnswering(u.ns, u.addrs[i], fmt.Sprintf("h%d.%s", hotFirst, zoneOrigin), p, 10*time.Second); err != nil {
		return fmt.Errorf("authd on %s: %w (log %s)", u.addrs[i], err, p.log)
	}
	return nil
}

func (u *upstreams) startAll() error {
	u.procs = make([]*proc, len(u.addrs))
	for i := range u.addrs {
		if err := u.start(i); err != nil {
			return err
		}
	}
	return nil
}

// flap stops the primary every period and starts it again half a period
// later, until ctx ends. The primary is always left running.
func (u *upstreams) flap(ctx context.Context, period time.Duration) {
	for {
		if !sleepCtx(ctx, period/2) {
			return
		}
		u.mu.Lock()
		p := u.procs[0]
		u.mu.Unlock()
		p.stop(5 * time.Second)
		u.event("primary %s stopped (pid %d)", u.addrs[0], p.pid)
		down := sleepCtx(ctx, period/2)
		err := u.start(0)
		u.event("primary %s answering again", u.addrs[0])
		u.mu.Lock()
		u.flaps++
		if err != nil {
			u.errs = append(u.errs, err.Error())
		}
		u.mu.Unlock()
		if !down || err != nil {
			return
		}
	}
}

func (u *upstreams) stopAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.procs {
		if p != nil {
			p.stop(5 * time.Second)
		}
	}
}

func (u *upstreams) flapCount() (int, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.flaps, append([]string(nil), u.errs...)
}

func (u *upstreams) eventLog() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.events...)
}

// reloadResult is one SIGHUP and what came of it.
type reloadResult struct {
	at      time.Duration
	variant policyVariant
	ok      bool // valid config took effect, or the broken one was kept out
	detail  string
}

// reloader alternates configs A and B with SIGHUP; the second reload
// offers the broken config instead, which must be rejected.
type reloader struct {
	egressd *proc
	path    string
	params  configParams // variant is the live one
	probe   *exchanger
	scraper *scraper
	start   time.Time

	mu      sync.Mutex
	results []reloadResult
}

func (r *reloader) loop(ctx context.Context, period time.Duration) {
	defer r.probe.close()
	next := variantB
	for n := 1; ; n++ {
		if !sleepCtx(ctx, period) {
			return
		}
		v := next
		if n == 2 {
			v = variantBroken
		}
		res := r.reload(ctx, v)
		r.mu.Lock()
		r.results = append(r.results, res)
		r.mu.Unlock()
		if v != variantBroken {
			next = map[policyVariant]policyVariant{variantA: variantB, variantB: variantA}[v]
		}
	}
}

// reload writes variant v, sends SIGHUP and waits up to 5 s for the
// outcome: a valid config must show in the flip name's answer and in
// egressd_config_reloads_total{result="ok"}; a broken one must raise
// the error count while the live policy stays as it was.
func (r *reloader) reload(ctx context.Context, v policyVariant) reloadResult {
	res := reloadResult{at: time.Since(r.start).Round(time.Millisecond), variant: v}
	series := `egressd_config_reloads_total{result="ok"}`
	if v == variantBroken {
		series = `egressd_config_reloads_total{result="error"}`
	}
	before, err := r.counter(series)
	if err != nil {
		res.detail = "metrics before reload: " + err.Error()
		return res
	}
	p := r.params
	p.variant = v
	if err := writeConfig(r.path, p); err != nil {
		res.detail = err.Error()
		return res
	}
	if err := r.egressd.signal(syscall.SIGHUP); err != nil {
		res.detail = err.Error()
		return res
	}
	wantFlip := v.flipAllowed()
	if v == variantBroken {
		wantFlip = r.params.variant.flipAllowed()
	}
	deadline := time.Now().Add(5 * time.Second)
	counted, flipOK := false, false
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !counted {
			n, err := r.counter(series)
			counted = err == nil && n > before
		}
		flipOK, last = r.flipIs(wantFlip)
		if counted && flipOK {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	switch {
	case !counted:
		res.detail = fmt.Sprintf("%s did not rise within 5s", series)
	case !flipOK:
		res.detail = fmt.Sprintf("%s answered %s, want allowed=%t", flipName, last, wantFlip)
	default:
		res.ok = true
		if v == variantBroken {
			res.detail = "rejected, previous policy kept"
		} else {
			r.params.variant = v
			res.detail = "applied"
		}
	}
	return res
}

func (r *reloader) counter(series string) (float64, error) {
	s, err := r.scraper.scrape()
	if err != nil {
		return 0, err
	}
	v, _ := s.get(series) // absent means zero
	return v, nil
}

// flipIs asks for flipName and reports whether the answer says allowed
// (NOERROR with an address) or denied (NXDOMAIN) as wanted.
func (r *reloader) flipIs(allowed bool) (bool, string) {
	q := new(dns.Msg)
	q.SetQuestion(flipName, dns.TypeA)
	reply, err := r.probe.exchange(q, time.Second)
	if err != nil {
		return false, err.Error()
	}
	got := dns.RcodeToString[reply.Rcode]
	if allowed {
		return reply.Rcode == dns.RcodeSuccess && len(addresses(reply)) > 0, got
	}
	return reply.Rcode == dns.RcodeNameError, got
}

func (r *reloader) snapshot() []reloadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]reloadResult(nil), r.results...)
}

// waitAnswering polls server with a query for name from ns until it
// gets any reply, p exits or limit passes.
func waitAnswering(ns netnstest.Namespace, server netip.AddrPort, name string, p *proc, limit time.Duration) error {
	ex := newExchanger(ns, server, "udp")
	defer ex.close()
	deadline := time.Now().Add(limit)
	var lastErr error
	for time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("exited: %v", p.exitErr())
		}
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		if _, err := ex.exchange(q, 300*time.Millisecond); err == nil {
			return nil
		} else {
			lastErr = err
			ex.close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer within %s: %v", limit, lastErr)
}

// sleepCtx waits d and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
