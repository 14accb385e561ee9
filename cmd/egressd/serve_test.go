package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
	"github.com/egressd/egressd/internal/freeport"
	"github.com/egressd/egressd/internal/gobuild"
	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/internal/wait"
)

// egressdBin is this package built as a program, once per test run, for
// the tests that run egressd as a process.
var egressdBin = gobuild.Binary{Pkg: "./cmd/egressd"}

func buildOnce() (string, error) { return egressdBin.Path() }

func TestMain(m *testing.M) {
	code := m.Run()
	egressdBin.Remove()
	os.Exit(code)
}

// startUpstream serves A 192.0.2.7 for every name on a loopback port.
func startUpstream(t *testing.T) string {
	t.Helper()
	return dnstest.Start(t, func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 600},
				A:   net.IPv4(192, 0, 2, 7),
			})
		}
		_ = w.WriteMsg(m)
	}).Addr
}

// freePort is a loopback address whose port is free for UDP and TCP.
func freePort(t *testing.T) string {
	t.Helper()
	ports, err := freeport.Loopback(1)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0])
}

type daemonProc struct {
	cmd    *exec.Cmd
	stderr *lockedbuf.Buffer
	dns    string
	http   string
}

func startDaemon(t *testing.T, conf, dnsAddr, httpAddr string) *daemonProc {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{stderr: &lockedbuf.Buffer{}, dns: dnsAddr, http: httpAddr}
	d.cmd = exec.Command(bin, "serve", "-config", conf)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("egressd stderr:\n%s", d.stderr.String())
		}
	})
	answers := func() bool {
		c := &dns.Client{Timeout: 200 * time.Millisecond}
		m := new(dns.Msg)
		m.SetQuestion("probe.invalid.", dns.TypeA)
		_, _, err := c.Exchange(m, dnsAddr)
		return err == nil
	}
	if !wait.Until(10*time.Second, 50*time.Millisecond, answers) {
		t.Fatalf("egressd did not answer on %s", dnsAddr)
	}
	return d
}

func (d *daemonProc) query(t *testing.T, name string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := c.Exchange(m, d.dns)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

func (d *daemonProc) waitLog(t *testing.T, fragment string) {
	t.Helper()
	if !wait.Until(5*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(d.stderr.String(), fragment) }) {
		t.Fatalf("daemon log lacks %q", fragment)
	}
}

func (d *daemonProc) metric(t *testing.T, line string) bool {
	t.Helper()
	resp, err := http.Get("http://" + d.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(body), line)
}

func serveConfig(upstream, listen, metricsAddr, qlog, extra string) string {
	return fmt.Sprintf(`
[server]
listen = [%q]
%s
[upstream]
servers = [%q]

[firewall]
backend = "none"

[log]
queries = %q

[metrics]
listen = %q

[[group]]
name = "local"
clients = ["127.0.0.0/8"]
allow = ["allowed.test", "*.allowed.test"]
`, listen, extra, upstream, qlog, metricsAddr)
}

// TestServeReloadAndMetrics runs the real binary: answers follow policy,
// /metrics counts them, SIGHUP applies a new policy, a bad config on
// SIGHUP keeps the running one, and SIGTERM exits cleanly with the query
// log complete.
func TestServeReloadAndMetrics(t *testing.T) {
	dir := t.TempDir()
	upstream := startUpstream(t)
	listen, metricsAddr := freePort(t), freePort(t)
	qlog := filepath.Join(dir, "queries.log")
	conf := writeFile(t, dir, "egressd.toml", serveConfig(upstream, listen, metricsAddr, qlog, ""))
	d := startDaemon(t, conf, listen, metricsAddr)

	if r := d.query(t, "www.allowed.test"); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("allowed name: %v", r)
	}
	if r := d.query(t, "other.test"); r.Rcode != dns.RcodeNameError {
		t.Fatalf("unlisted name: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	if !d.metric(t, `egressd_queries_total{decision="allow",group="local",qtype="A"} 1`) {
		t.Error("metrics lack one allowed A query for group local")
	}
	if !d.metric(t, `egressd_queries_total{decision="deny",group="local",qtype="A"}`) {
		t.Error("metrics lack denied queries for group local")
	}

	// New policy: other.test allowed, www.allowed.test denied.
	writeFile(t, dir, "egressd.toml", strings.Replace(serveConfig(upstream, listen, metricsAddr, qlog, ""),
		`allow = ["allowed.test", "*.allowed.test"]`, `allow = ["other.test"]`, 1))
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "config reloaded")
	d.waitLog(t, "group[local].allow added: other.test")
	if r := d.query(t, "other.test"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after reload other.test: rcode %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
	if r := d.query(t, "www.allowed.test"); r.Rcode != dns.RcodeNameError {
		t.Errorf("after reload www.allowed.test: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}

	// A broken config is rejected and the running policy stays.
	writeFile(t, dir, "egressd.toml", "[server]\nlisten = 42\n")
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "keeping the running config")
	if r := d.query(t, "other.test"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after bad reload other.test: rcode %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
	if !d.metric(t, `egressd_config_reloads_total{result="error"} 1`) || !d.metric(t, `egressd_config_reloads_total{result="ok"} 1`) {
		t.Error("reload metrics did not count one ok and one error")
	}

	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	entries := readLog(t, qlog)
	// probe + 2 before reload + 2 after + 1 after the bad reload.
	if len(entries) < 6 {
		t.Fatalf("query log has %d entries, want at least 6", len(entries))
	}
	want := map[string]string{"www.allowed.test.": "allow", "other.test.": "deny"}
	for _, e := range entries[:3] {
		if dec, ok := want[e["qname"].(string)]; ok && e["decision"] != dec {
			t.Errorf("log entry %v: decision %v, want %s", e["qname"], e["decision"], dec)
		}
	}
}

// TestServeAuditMode: denied names are still resolved and logged would_deny.
func TestServeAuditMode(t *testing.T) {
	dir := t.TempDir()
	upstream := startUpstream(t)
	listen, metricsAddr := freePort(t), freePort(t)
	qlog := filepath.Join(dir, "queries.log")
	conf := writeFile(t, dir, "egressd.toml", serveConfig(upstream, listen, metricsAddr, qlog, `mode = "audit"`))
	d := startDaemon(t, conf, listen, metricsAddr)
	r := d.query(t, "unlisted.test")
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("audit mode must resolve denied names, got %v", r)
	}
	// The start-up probe (probe.invalid.) is a would_deny query too; it is
	// counted when its answer is recorded, which can come after the daemon
	// reports ready, so wait for it within the probe's upstream timeout.
	if !wait.Until(5*time.Second, 20*time.Millisecond, func() bool {
		return d.metric(t, `egressd_queries_total{decision="would_deny",group="local",qtype="A"} 2`)
	}) {
		t.Error("metrics lack the would_deny query")
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	_ = d.cmd.Wait()
	found := false
	for _, e := range readLog(t, qlog) {
		if e["qname"] == "unlisted.test." {
			found = true
			if e["decision"] != "would_deny" || e["rule"] != "default" {
				t.Errorf("audit log entry: %v", e)
			}
		}
	}
	if !found {
		t.Error("query log lacks unlisted.test.")
	}
}

func readLog(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("query log line is not JSON: %q", sc.Text())
		}
		out = append(out, e)
	}
	return out
}
