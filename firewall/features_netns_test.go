package firewall

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/internal/testfile"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// labelRuleset is what nft itself is asked to load to tell whether the
// kernel has conntrack labels: the oracle the probe is checked against.
const labelRuleset = `table inet labelcheck {
	chain c {
		ct label set 23
		ct label 23 accept
	}
}
`

// TestProbeAgreesWithNftAndLeavesNothing probes a fresh namespace for real:
// the answer must match whether nft can load label rules there, no table
// may be left behind, and a backend started there must use the answer.
func TestProbeAgreesWithNftAndLeavesNothing(t *testing.T) {
	ns := newTestNS(t)
	got, err := probeFeatures(ns.fd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if left := ns.exec(t, "nft", "list", "tables"); strings.TrimSpace(left) != "" {
		t.Errorf("probe left tables behind: %q", left)
	}
	file := testfile.Write(t, filepath.Join(t.TempDir(), "labels.nft"), labelRuleset)
	nftAccepts := ns.Command("nft", "-f", file).Run() == nil
	if got.CtLabels != nftAccepts {
		t.Fatalf("probe says labels %t, nft loading label rules says %t", got.CtLabels, nftAccepts)
	}
	if nftAccepts {
		ns.exec(t, "nft", "delete", "table", "inet", "labelcheck")
	}

	// Filled from this namespace (or earlier tests), the process cache
	// answers RenderForKernel without probing the host.
	if f, err := DetectFeatures(ns.fd); err != nil || f != got {
		t.Fatalf("DetectFeatures = %+v, %v; want %+v", f, err, got)
	}
	if RenderForKernel(allowSpec()) != RenderFor(allowSpec(), got) {
		t.Errorf("RenderForKernel does not render for this kernel's features %+v", got)
	}

	m := metrics.New()
	n := startNFTWith(t, ns, allowSpec(), nil, Options{Metrics: m})
	if n.Features() != got {
		t.Errorf("backend uses %+v, the kernel has %+v", n.Features(), got)
	}
	if g := testutil.ToFloat64(m.FirewallFeatures.WithLabelValues(featureCtLabel)); g != boolGauge(got.CtLabels) {
		t.Errorf("egressd_firewall_features{feature=%q} = %v, want %v", featureCtLabel, g, boolGauge(got.CtLabels))
	}
}

// TestFallbackWithoutCtLabelsStillEnforces plays a kernel that rejects the
// label probe as one built without CONFIG_NF_CONNTRACK_LABELS does, on a
// gateway that rewrites Service addresses. The table must install without
// the label rules, exactly as RenderFor shows it, warn once, export the
// missing feature, and still pass approved destinations and drop the rest
// over real TCP, judging rewritten connections by the translated address.
func TestFallbackWithoutCtLabelsStillEnforces(t *testing.T) {
	client, gw, _ := gatewayTopology(t, "8080", "9050")
	nftLoad(t, gw, serviceNAT("prerouting"))
	waitDial(t, client, "10.96.0.10:80")

	spec := Spec{Table: "egressd", Hooks: []string{HookForward}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.97.0.0/24")}}}
	logs := &lockedbuf.Buffer{}
	m := metrics.New()
	probes := 0
	n := startNFTWith(t, gw, spec, nil, Options{
		Metrics: m,
		Logger:  slog.New(slog.NewTextHandler(logs, nil)),
		probeSend: func(*nftables.Conn) error {
			probes++
			return kernelRejects(unix.EOPNOTSUPP)
		},
	})

	if n.Features().CtLabels {
		t.Fatal("backend claims conntrack labels the kernel rejected")
	}
	if g := testutil.ToFloat64(m.FirewallFeatures.WithLabelValues(featureCtLabel)); g != 0 {
		t.Errorf("egressd_firewall_features{feature=%q} = %v, want 0", featureCtLabel, g)
	}
	checkInstalledAsRendered(t, gw, spec, Features{})
	if err := n.Check(); err != nil {
		t.Errorf("Check on the table without labels: %v", err)
	}

	for _, a := range dnatAllowances() {
		mustAllow(t, n, a)
	}
	type dialCase struct {
		name   string
		addr   string
		passes bool
	}
	check := func(cases ...dialCase) {
		t.Helper()
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { expectDial(t, client, tc.addr, tc.passes) })
		}
	}
	check(
		dialCase{"approved destination", "10.98.0.3:9050", true},
		dialCase{"Service rewritten to an approved destination", "10.96.0.12:80", true},
		dialCase{"approved Service address whose backend is not approved", "10.96.0.10:80", false},
		dialCase{"approved Service address and port whose backend is not approved", "10.96.0.11:80", false},
		dialCase{"Service address never approved", "10.96.0.13:80", false},
		dialCase{"destination never approved", "10.98.0.2:8080", false},
	)

	// Approving the backend itself is what admits its Services here.
	mustAllow(t, n, Allowance{Group: "clients", IPs: addrs("10.98.0.2"), TTL: time.Minute,
		Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 8080, To: 8080}}})
	check(
		dialCase{"Service rewritten to a backend approved later", "10.96.0.13:80", true},
		dialCase{"that backend addressed directly", "10.98.0.2:8080", true},
		dialCase{"that backend on a port not approved", "10.98.0.2:9050", false},
	)

	// A reload keeps the layout and asks the kernel nothing again.
	spec.Grace = 10 * time.Second
	if err := n.Reload(spec); err != nil {
		t.Fatal(err)
	}
	if listed := gw.exec(t, "nft", "list", "table", "inet", spec.Table); strings.Contains(listed, "ct label") || strings.Contains(listed, "prenat_") {
		t.Errorf("reload installed label rules:\n%s", listed)
	}
	if err := n.Check(); err != nil {
		t.Errorf("Check after reload: %v", err)
	}
	if probes != 1 {
		t.Errorf("kernel probed %d times, want once", probes)
	}
	warnings := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "conntrack labels") {
			warnings++
			if !strings.Contains(line, "DNAT") || !strings.Contains(line, "translated address") {
				t.Errorf("warning does not say what is lost: %s", line)
			}
		}
	}
	if warnings != 1 {
		t.Errorf("%d warnings about conntrack labels, want exactly one:\n%s", warnings, logs.String())
	}
}

// checkInstalledAsRendered compares nft's listing of the table with
// RenderFor, leaving out RenderFor's comment lines (nft does not keep them).
func checkInstalledAsRendered(t *testing.T, ns *testNS, spec Spec, f Features) {
	t.Helper()
	var want []string
	for _, line := range strings.Split(RenderFor(spec, f), "\n") {
		if !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	got := ns.exec(t, "nft", "list", "table", "inet", spec.Table)
	if normalize(got) != normalize(strings.Join(want, "\n")) {
		t.Errorf("installed table differs from RenderFor(%+v):\n--- nft list\n%s\n--- RenderFor\n%s", f, got, strings.Join(want, "\n"))
	}
}
