package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/fleet"
	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/internal/natstest"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/policy"
)

// fleetSection is a [fleet] section for node with NATS at url.
func fleetSection(url, node, extra string) string {
	return fmt.Sprintf("\n[fleet]\nservers = [%q]\nnode = %q\n%s", url, node, extra)
}

// approvals reads every approval stored for group.
func approvals(t *testing.T, url, group string) []fleet.Message {
	t.Helper()
	js := natstest.JetStream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), natstest.ReadyLimit)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, fleet.DefaultStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{fleet.ApprovalSubject(fleet.DefaultSubjectPrefix, group)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []fleet.Message
	pending := cons.CachedInfo().NumPending
	for range pending {
		msg, err := cons.Next(jetstream.FetchMaxWait(natstest.ReadyLimit))
		if err != nil {
			t.Fatal(err)
		}
		var m fleet.Message
		if err := json.Unmarshal(msg.Data(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// egressd serve with [fleet] publish stores each approval in JetStream
// before it answers: the message is there once the answer is.
func TestServePublishesApprovals(t *testing.T) {
	s := natstest.Run(t)
	dir := t.TempDir()
	listen, metricsAddr := freePort(t), freePort(t)
	conf := writeFile(t, dir, "egressd.toml", serveConfig(startUpstream(t), listen, metricsAddr, "none", "")+
		fleetSection(s.URL(), "gw-a", `publish = ["local"]`+"\n"))
	d := startDaemon(t, conf, listen, metricsAddr)
	if r := d.query(t, "www.allowed.test"); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	got := approvals(t, s.URL(), "local")
	if len(got) != 1 {
		t.Fatalf("%d approvals stored, want 1", len(got))
	}
	m := got[0]
	if m.Node != "gw-a" || m.Group != "local" || len(m.Approvals) != 1 || m.Approvals[0].Name != "www.allowed.test." ||
		len(m.Approvals[0].IPs) != 1 || m.Approvals[0].IPs[0] != "192.0.2.7" {
		t.Errorf("stored %+v", m)
	}
	if !d.metric(t, "egressd_fleet_published_total 1") {
		t.Error("metrics lack one approval published")
	}
}

// With confirm naming a node that never confirms, the answer waits
// confirm_timeout and is SERVFAIL, or given anyway with fail_open.
func TestServeConfirmTimeout(t *testing.T) {
	s := natstest.Run(t)
	for _, tc := range []struct {
		failOpen bool
		rcode    int
	}{{false, dns.RcodeServerFailure}, {true, dns.RcodeSuccess}} {
		t.Run(fmt.Sprintf("fail_open=%t", tc.failOpen), func(t *testing.T) {
			dir := t.TempDir()
			listen, metricsAddr := freePort(t), freePort(t)
			const timeout = 300 * time.Millisecond
			text := serveConfig(startUpstream(t), listen, metricsAddr, "none", "") +
				fleetSection(s.URL(), "gw-a", fmt.Sprintf("publish = [\"local\"]\nconfirm = [\"gw-z\"]\nconfirm_timeout = %q\n", timeout.String()))
			text = strings.Replace(text, `backend = "none"`, fmt.Sprintf("backend = \"none\"\nfail_open = %t", tc.failOpen), 1)
			d := startDaemon(t, writeFile(t, dir, "egressd.toml", text), listen, metricsAddr)
			start := time.Now()
			r := d.query(t, "www.allowed.test")
			if took := time.Since(start); took < timeout {
				t.Errorf("answered after %s, before confirm_timeout %s", took, timeout)
			}
			if r.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if !d.metric(t, `egressd_fleet_confirms_total{result="timeout"} 1`) {
				t.Error("metrics lack one confirm timeout")
			}
		})
	}
}

// egressd agent: not ready while NATS is unreachable; once NATS is up it
// replays, reports ready, and applies (and counts) what resolvers publish.
func TestAgentReadyAfterReplay(t *testing.T) {
	s := natstest.Run(t)
	s.Stop()
	dir := t.TempDir()
	metricsAddr := freePort(t)
	conf := writeFile(t, dir, "agent.toml", serveConfig("127.0.0.1:53", freePort(t), metricsAddr, "none", "")+
		fleetSection(s.URL(), "gw-b", `enforce = ["local"]`+"\n"))
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedbuf.Buffer{}
	cmd := exec.Command(bin, "agent", "-config", conf)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	})
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if !wait.Until(10*time.Second, 20*time.Millisecond, func() bool { c, _ := readyz(); return c != 0 }) {
		t.Fatal("agent metrics listener not up")
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "not connected to NATS") {
		t.Errorf("NATS down: /readyz %d %q, want 503 naming NATS", code, body)
	}
	// A resolver publishes an approval while the agent waits.
	s.Restart()
	pub, err := fleet.Start(fleet.Options{Servers: []string{s.URL()}, Node: "gw-a", Publish: []string{"local"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Wrap(nopEnforcer{}).Allow(context.Background(), allowanceFor("local")); err != nil {
		t.Fatal(err)
	}
	if !wait.Until(natstest.ReadyLimit, 20*time.Millisecond, func() bool { c, _ := readyz(); return c == http.StatusOK }) {
		code, body := readyz()
		t.Fatalf("agent not ready after NATS came up: %d %q", code, body)
	}
	if !wait.Until(natstest.ReadyLimit, 20*time.Millisecond, func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "egressd_fleet_applied_total 1")
	}) {
		t.Error("agent did not count the approval applied")
	}
}

// nopEnforcer is a local firewall that holds everything at once.
type nopEnforcer struct{}

func (nopEnforcer) Allow(context.Context, enforce.Allowance) error { return nil }
func (nopEnforcer) Close() error                                   { return nil }

// allowanceFor is an approval the agent's policy (serveConfig) approves.
func allowanceFor(group string) enforce.Allowance {
	return enforce.Allowance{Group: group, IPs: []netip.Addr{netip.MustParseAddr("192.0.2.7")},
		TTL: time.Minute, Name: "www.allowed.test."}
}

// Two egressd serve, each publishing and enforcing the same group (a
// gateway pair): an answer of one is applied by the other, and neither
// applies its own.
func TestServePairAppliesPeer(t *testing.T) {
	s := natstest.Run(t)
	upstream := startUpstream(t)
	start := func(node string) *daemonProc {
		dir := t.TempDir()
		listen, metricsAddr := freePort(t), freePort(t)
		conf := writeFile(t, dir, "egressd.toml", serveConfig(upstream, listen, metricsAddr, "none", "")+
			fleetSection(s.URL(), node, "publish = [\"local\"]\nenforce = [\"local\"]\n"))
		return startDaemon(t, conf, listen, metricsAddr)
	}
	a, b := start("gw-a"), start("gw-b")
	if r := a.query(t, "www.allowed.test"); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	if !wait.Until(natstest.ReadyLimit, 20*time.Millisecond, func() bool { return b.metric(t, "egressd_fleet_applied_total 1") }) {
		t.Error("gw-b did not apply gw-a's approval")
	}
	// And back: gw-a takes gw-b's approval, stored after its own, which
	// it skipped (else it would count two).
	if r := b.query(t, "other.allowed.test"); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	if !wait.Until(natstest.ReadyLimit, 20*time.Millisecond, func() bool { return a.metric(t, "egressd_fleet_applied_total 1") }) {
		t.Error("gw-a did not apply exactly gw-b's approval")
	}
	if !b.metric(t, "egressd_fleet_applied_total 1") {
		t.Error("gw-b applied its own approval")
	}
}

// After a restart, a node publishes again only the carried-over elements
// of its own answers (those the re-check at start kept: Inherited), with
// their targets: not those another node's approval added (a pair node
// would publish them as its own), not those without a name.
func TestRepublishable(t *testing.T) {
	https := policy.PortRange{Proto: policy.ProtoTCP, From: 443, To: 443}
	dst := netip.MustParseAddr("192.0.2.7")
	until := time.Now().Add(time.Minute)
	tests := []struct {
		name string
		e    firewall.LiveElement
		want bool
	}{
		{"own answer", firewall.LiveElement{Group: "staff", Dst: dst, Name: "own.test.", Expiry: until}, true},
		{"own answer with targets", firewall.LiveElement{Group: "staff", Dst: dst, Name: "own.test.", Targets: []string{"cdn.test."}, Expiry: until}, true},
		{"own answer on its ports", firewall.LiveElement{Group: "staff", Dst: dst, Name: "own.test.", Ports: []policy.PortRange{https}, Expiry: until}, true},
		{"another node's approval", firewall.LiveElement{Group: "staff", Dst: dst, Name: "own.test.", Expiry: until, FromFleet: true}, false},
		{"no name", firewall.LiveElement{Group: "staff", Dst: dst, Expiry: until}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			held := republishable([]firewall.LiveElement{tc.e})
			if got := len(held) == 1; got != tc.want {
				t.Fatalf("republished %v, want %v", held, tc.want)
			}
			if !tc.want {
				return
			}
			h, a := held[0], held[0].Allowance
			if a.Group != tc.e.Group || a.Name != tc.e.Name || !slices.Equal(a.Targets, tc.e.Targets) || !slices.Equal(a.Ports, tc.e.Ports) || len(a.IPs) != 1 || a.IPs[0] != dst || !h.Until.Equal(until) || a.FromFleet {
				t.Errorf("held %+v, want %+v as this node's approval", h, tc.e)
			}
		})
	}
}
