package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/dropjoin"
	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/nflog"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/resolver"
	"github.com/miekg/dns"
)

// Drop event reading: the queue between the NFLOG reader and the joiner,
// and the socket buffer.
const (
	dropQueue       = 4096
	nflogReadBuffer = 4 << 20
)

// startDrops reads drop events from NFLOG when the drop rules send them
// there, joins them to recent answers and logs them; it returns the
// enforcer and the query log the resolver is to use (recording answers
// and denied queries for the join).
func (d *daemon) startDrops(ctx context.Context, cfg *config.Config) (enforce.Enforcer, resolver.QueryLogger, error) {
	f := cfg.Firewall
	if d.nft == nil || (f.DropEvents != firewall.DropEventsNFLOG && f.DropEvents != firewall.DropEventsBoth) {
		return d.enforcer, d.qlog, nil
	}
	r, err := nflog.Open(nflog.Config{Group: uint16(f.NFLOGGroup), ReadBuffer: nflogReadBuffer})
	if err != nil {
		return nil, nil, fmt.Errorf("firewall.drop_events: %w", err)
	}
	idx := dropjoin.NewIndex(f.RecentAnswers, f.RecentAnswersAgeDur)
	seedInherited(idx, d.nft.Inherited(), time.Now())
	j := dropjoin.NewJoiner(idx, dropQueue)
	j.ScopeClient = f.Scope == firewall.ScopeClient
	current := d.engine.Load
	j.GroupOf = groupOf(current)
	j.Log = d.qlog.Write
	drops, err := d.metrics.WatchDrops(func() float64 { return float64(r.Lost() + j.Lost()) })
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	j.Count = func(group, reason string) { drops.WithLabelValues(group, reason).Inc() }
	j.Policy = policyDenies(current)
	d.metrics.Why = j.WhyHandler(policyNow(current))
	d.dropReader = r
	go func() {
		<-ctx.Done()
		r.Close()
	}()
	go func() {
		for {
			evs, err := r.Read()
			if err != nil {
				if ctx.Err() == nil {
					d.logger.Error("reading drop events stopped", "err", err)
				}
				return
			}
			for _, ev := range evs {
				j.Enqueue(ev)
			}
		}
	}()
	go j.Run(ctx)
	return &dropjoin.Recording{Enforcer: d.enforcer, Index: idx, Grace: f.GraceDur}, &dropjoin.DenialLog{QueryLogger: d.qlog, Index: idx}, nil
}

// seedInherited adds the approvals an earlier run left in the firewall's
// sets (and this run carried over) to the index, so drops right after a
// restart are explained by them too.
func seedInherited(idx *dropjoin.Index, live []firewall.LiveElement, now time.Time) {
	for _, e := range live {
		idx.Add(dropjoin.Answer{
			Time: now, Expiry: e.Expiry, Client: e.Client, Group: e.Group, Name: e.Name, Targets: e.Targets,
			Addrs: []netip.Addr{e.Dst}, Ports: e.Ports, Inherited: true,
		})
	}
}

// groupOf is the group of a source address under the current policy.
func groupOf(current func() *policy.Engine) func(netip.Addr) string {
	return func(a netip.Addr) string { return current().Decide(a, ".", dns.TypeA).Group }
}

// policyDenies says whether the current policy denies a name to a client.
func policyDenies(current func() *policy.Engine) dropjoin.PolicyFunc {
	return func(client netip.Addr, name string) (string, bool) {
		dec := current().Decide(client, name, dns.TypeA)
		return dec.Rule, dec.Verdict == policy.Deny
	}
}

// policyNow is what the current policy decides for a client and a name,
// for people: "allow (rule R)", "deny (rule R)".
func policyNow(current func() *policy.Engine) func(netip.Addr, string) string {
	return func(client netip.Addr, name string) string {
		dec := current().Decide(client, name, dns.TypeA)
		return fmt.Sprintf("%s (rule %s)", dec.Verdict, dec.Rule)
	}
}

// whyCmd asks the running egressd why a client's packets to a destination
// are dropped.
func whyCmd(args []string, stdout io.Writer) error {
	fs := newFlagSet("why", stdout)
	path := configFlag(fs)
	client := fs.String("client", "", "the client address")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *client == "" || fs.NArg() != 1 {
		return fmt.Errorf("%w: usage: egressd why -config FILE -client IP DEST[:PORT[/PROTO]]", errUsage)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if cfg.Metrics.Listen == "" {
		return fmt.Errorf("%s: metrics.listen is empty: egressd why asks the running daemon there", cfg.File)
	}
	host, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/why",
		RawQuery: url.Values{"client": {*client}, "dest": {fs.Arg(0)}}.Encode()}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u.String())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fmt.Errorf("egressd at %s does not read drop events (firewall.drop_events is not \"nflog\" or \"both\")", u.Host)
	default:
		return fmt.Errorf("egressd at %s: %s: %s", u.Host, resp.Status, body)
	}
	if *asJSON {
		_, err = stdout.Write(body)
		return err
	}
	var w dropjoin.Why
	if err := json.Unmarshal(body, &w); err != nil || w.Entry == nil || w.Entry.Drop == nil {
		return fmt.Errorf("egressd at %s: unexpected answer %q", u.Host, body)
	}
	_, err = io.WriteString(stdout, dropjoin.FormatWhy(w))
	return err
}
