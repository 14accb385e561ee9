package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/listserver"
	"github.com/egressd/egressd/internal/wait"
)

// A reload applies a rule change at once, however long a list server
// takes: lists whose sources did not change are refreshed after the new
// config is in use. Before, SIGHUP fetched every list first, so a stalled
// server held the change back for the whole fetch timeout (2 minutes).
func TestReloadDoesNotWaitForListServers(t *testing.T) {
	lists := listserver.Start(t, "blocked.test\n")

	dir := t.TempDir()
	upstream := startUpstream(t)
	listen, metricsAddr := freePort(t), freePort(t)
	base := serveConfig(upstream, listen, metricsAddr, "none", `state_dir = "`+filepath.Join(dir, "state")+`"`) + `deny_categories = ["ads"]

[categories.ads]
sources = ["` + lists.URL + `/ads.txt"]
`
	conf := writeFile(t, dir, "egressd.toml", base)
	d := startDaemon(t, conf, listen, metricsAddr)
	if r := d.query(t, "other.test"); r.Rcode != dns.RcodeNameError {
		t.Fatalf("before reload other.test: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}

	lists.Stall()
	writeFile(t, dir, "egressd.toml", strings.Replace(base, `allow = ["allowed.test", "*.allowed.test"]`, `allow = ["other.test", "blocked.test"]`, 1))
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	// The list fetch timeout is 2 minutes; the reload must not wait for it.
	if !wait.Until(time.Minute, 20*time.Millisecond, func() bool { return strings.Contains(d.stderr.String(), "config reloaded") }) {
		t.Fatalf("no reload while the list server stalls; log:\n%s", d.stderr.String())
	}
	if r := d.query(t, "other.test"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after reload other.test: rcode %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
	// The deny category still holds its last good list: an explicit allow
	// beats it (rules before categories), so query a name below it instead.
	if r := d.query(t, "www.blocked.test"); r.Rcode != dns.RcodeNameError {
		t.Errorf("after reload www.blocked.test: rcode %s, want NXDOMAIN from the kept list", dns.RcodeToString[r.Rcode])
	}
	if !wait.Until(time.Minute, 20*time.Millisecond, func() bool { return lists.Stalled() > 0 }) {
		t.Error("the lists were not refreshed in the background after the reload")
	}
}

// A reload applies server keys that were frozen at start before:
// server.clients narrowed means REFUSED at once, and a restart-only key
// changed alongside is named and keeps its running value.
func TestReloadAppliesServerSettings(t *testing.T) {
	dir := t.TempDir()
	upstream := startUpstream(t)
	listen, metricsAddr := freePort(t), freePort(t)
	base := serveConfig(upstream, listen, metricsAddr, "none", `clients = ["127.0.0.0/8"]`)
	conf := writeFile(t, dir, "egressd.toml", base)
	d := startDaemon(t, conf, listen, metricsAddr)
	if r := d.query(t, "www.allowed.test"); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("before reload: rcode %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
	narrowed := strings.Replace(base, `clients = ["127.0.0.0/8"]`, `clients = ["127.0.0.2/32"]`+"\ntcp_max_conns = 7", 1)
	writeFile(t, dir, "egressd.toml", narrowed)
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "config reloaded")
	d.waitLog(t, "key=server.tcp_max_conns")
	if r := d.query(t, "www.allowed.test"); r.Rcode != dns.RcodeRefused {
		t.Errorf("after narrowing server.clients: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}
