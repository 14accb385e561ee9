package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/gobuild"
	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/internal/natsproc"
	"github.com/egressd/egressd/internal/testfile"
	"github.com/egressd/egressd/internal/wait"
	"github.com/miekg/dns"
)

// egressd is the binary under test, built once per run on first use:
// ./cmd/egressd, or $EGRESSD_BIN (to test a binary built elsewhere).
var egressd = gobuild.Binary{Pkg: "./cmd/egressd", Env: "EGRESSD_BIN"}

func TestMain(m *testing.M) {
	code := m.Run()
	natsproc.RemoveBuild()
	egressd.Remove()
	os.Exit(code)
}

// egressdBinary builds ./cmd/egressd from the module root, or returns
// $EGRESSD_BIN when set (to test a binary built elsewhere).
func egressdBinary(t *testing.T) string {
	t.Helper()
	bin, err := egressd.Path()
	if err != nil {
		t.Fatalf("building egressd: %v", err)
	}
	return bin
}

// egressdConfig holds the settings the tests vary; render turns it into
// the TOML file egressd reads.
type egressdConfig struct {
	Listen       []netip.AddrPort
	Clients      []string // server.clients, and the group's unless GroupClients is set
	GroupClients []string
	Upstream     netip.AddrPort
	Mode         string // "" is enforce
	Hooks        []string
	Grace        string // "" is 1s
	MaxTTL       string // "" is 60s
	Scope        string // "" is group
	RemoveOnExit bool
	QueryLog     string                // "" is stdout
	Allow, Deny  []string              // nil is allowRules, denyRules
	Hosts        map[string]netip.Addr // [hosts]: name answered locally with one address
	// DNS over TLS and HTTPS: addresses, certificate and key files.
	TLSListen, HTTPSListen []netip.AddrPort
	TLSCert, TLSKey        string
	// DropEvents is firewall.drop_events ("" leaves the default) and
	// MetricsListen metrics.listen ("" is none).
	DropEvents    string
	MetricsListen string
	// ExtraGroups is TOML appended after the group, e.g. more [[group]]s.
	ExtraGroups string
	// FailOpen is firewall.fail_open; Fleet, when set, the [fleet] section.
	FailOpen bool
	Fleet    *fleetConfig
	// RebindingProtection sets the group's allow_private_answers to false
	// (the test addresses are private: true by default here).
	RebindingProtection bool
	// MaxElementsPerClient is firewall.max_elements_per_client (0 leaves
	// the default).
	MaxElementsPerClient int
}

// fleetConfig is the [fleet] section of one node.
type fleetConfig struct {
	Servers          []string
	Node             string
	Publish, Enforce []string
	Confirm          []string
	ConfirmTimeout   string // "" leaves the default
}

func (f fleetConfig) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[fleet]\nservers = %s\nnode = %q\npublish = %s\nenforce = %s\n",
		tomlList(f.Servers), f.Node, tomlList(orList(f.Publish, []string{})), tomlList(orList(f.Enforce, []string{})))
	if len(f.Confirm) > 0 {
		fmt.Fprintf(&b, "confirm = %s\n", tomlList(f.Confirm))
	}
	if f.ConfirmTimeout != "" {
		fmt.Fprintf(&b, "confirm_timeout = %q\n", f.ConfirmTimeout)
	}
	return b.String()
}

// The policy every test uses: default deny, explicit allows, and a
// denied name that an allowed one aliases to.
var (
	allowRules = []string{"allowed.test", "ports.test:443", "short.test", "refresh.test", "v6.test", "cname.test", "*.bulk.test"}
	denyRules  = []string{"denied.test", "hidden.test"}
)

const tableName = "egressd_e2e"

func (c egressdConfig) render() string {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	var listen []string
	for _, a := range c.Listen {
		listen = append(listen, a.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nlisten = %s\nclients = %s\nmode = %q\n",
		tomlList(listen), tomlList(c.Clients), or(c.Mode, "enforce"))
	if len(c.TLSListen)+len(c.HTTPSListen) > 0 {
		var dot, doh []string
		for _, a := range c.TLSListen {
			dot = append(dot, a.String())
		}
		for _, a := range c.HTTPSListen {
			doh = append(doh, a.String())
		}
		fmt.Fprintf(&b, "tls_listen = %s\nhttps_listen = %s\ntls_cert = %q\ntls_key = %q\n",
			tomlList(dot), tomlList(doh), c.TLSCert, c.TLSKey)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "[upstream]\nservers = %s\ntimeout = \"1s\"\n\n", tomlList([]string{c.Upstream.String()}))
	fmt.Fprintf(&b, "[firewall]\nbackend = \"nftables\"\ntable = %q\nhooks = %s\ngrace = %q\nmax_ttl = %q\nscope = %q\nremove_on_exit = %t\n",
		tableName, tomlList(c.Hooks), or(c.Grace, "1s"), or(c.MaxTTL, "60s"), or(c.Scope, "group"), c.RemoveOnExit)
	if c.FailOpen {
		b.WriteString("fail_open = true\n")
	}
	if c.DropEvents != "" {
		fmt.Fprintf(&b, "drop_events = %q\nnflog_group = 3\n", c.DropEvents)
	}
	if c.MaxElementsPerClient > 0 {
		fmt.Fprintf(&b, "max_elements_per_client = %d\n", c.MaxElementsPerClient)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "[log]\nqueries = %q\nlevel = \"debug\"\n\n", or(c.QueryLog, "stdout"))
	fmt.Fprintf(&b, "[metrics]\nlisten = %q\n\n", c.MetricsListen)
	if c.Fleet != nil {
		b.WriteString(c.Fleet.render() + "\n")
	}
	fmt.Fprintf(&b, "[[group]]\nname = \"clients\"\nclients = %s\nallow = %s\ndeny = %s\ndefault = \"deny\"\naction = \"nxdomain\"\nallow_private_answers = %t\n",
		tomlList(orList(c.GroupClients, c.Clients)), tomlList(orList(c.Allow, allowRules)), tomlList(orList(c.Deny, denyRules)), !c.RebindingProtection)
	if c.ExtraGroups != "" {
		b.WriteString("\n" + c.ExtraGroups + "\n")
	}
	if len(c.Hosts) > 0 {
		b.WriteString("\n[hosts]\n")
		for name, a := range c.Hosts {
			fmt.Fprintf(&b, "%q = [%q]\n", name, a.String())
		}
	}
	return b.String()
}

func orList(v, def []string) []string {
	if v == nil {
		return def
	}
	return v
}

func tomlList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// writeConfig stores the rendered config in the test's temp dir.
func writeConfig(t *testing.T, c egressdConfig) string {
	t.Helper()
	return testfile.Write(t, filepath.Join(t.TempDir(), "egressd.toml"), c.render())
}

// egressdProc is one egressd running inside a namespace.
type egressdProc struct {
	ns      *netns
	cmd     *exec.Cmd
	stdout  lockedbuf.Buffer
	stderr  lockedbuf.Buffer
	exited  chan struct{}
	waitErr error
	config  string
}

// startEgressd runs `egressd serve` in ns and waits until it answers DNS
// at probe when asked from probeFrom. On failure of the test it reports
// egressd's output and the namespace's ruleset; at the end it stops
// egressd.
func startEgressd(t *testing.T, ns *netns, c egressdConfig, probeFrom *netns, probe netip.AddrPort) *egressdProc {
	t.Helper()
	p := launch(t, ns, c, "serve")
	// A name no rule allows: any DNS answer means the server is up, and
	// the firewall is installed before the server starts.
	anyAnswer := func(*dns.Msg) bool { return true }
	if _, err := p.pollDNS(probeFrom, probe, "readiness-probe.test", 20*time.Second, anyAnswer); err != nil {
		t.Fatalf("egressd did not come up: %v", err)
	}
	return p
}

// launch runs `egressd SUBCOMMAND -config FILE` in ns without waiting for
// it to be ready. On failure of the test it reports egressd's output and
// the namespace's ruleset; at the end it stops egressd.
func launch(t *testing.T, ns *netns, c egressdConfig, subcommand string) *egressdProc {
	t.Helper()
	bin := egressdBinary(t)
	p := &egressdProc{ns: ns, exited: make(chan struct{}), config: writeConfig(t, c)}
	// `ip netns exec` execs egressd in place, so the PID is egressd's.
	p.cmd = ns.Command(bin, subcommand, "-config", p.config)
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.stop()
		if t.Failed() {
			t.Logf("egressd config %s:\n%s", p.config, c.render())
			t.Logf("egressd stderr:\n%s", p.stderr.String())
			t.Logf("egressd stdout:\n%s", p.stdout.String())
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nft list ruleset in %s:\n%s", ns.Name, ns.ruleset())
		}
	})
	return p
}

// pollDNS asks server from ns for name's A records every 100ms until a
// reply satisfies accept, and returns that reply. It gives up with an
// error, and the last reply or failure, when egressd exits or limit
// passes.
func (p *egressdProc) pollDNS(from *netns, server netip.AddrPort, name string, limit time.Duration, accept func(*dns.Msg) bool) (*dns.Msg, error) {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("egressd exited: %v", p.waitErr)
		default:
		}
		resp, err := query(from, server, "udp", name, dns.TypeA)
		if err == nil && resp != nil && accept(resp) {
			return resp, nil
		}
		if last = describe(resp); err != nil {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("no acceptable answer for %s at %s within %s; last: %s", name, server, limit, last)
}

// reload rewrites the config file, sends SIGHUP and waits until egressd
// logs that the config was reloaded (once more than before).
func (p *egressdProc) reload(t *testing.T, c egressdConfig) {
	t.Helper()
	const done = "config reloaded"
	before := strings.Count(p.stderr.String(), done)
	if err := os.WriteFile(p.config, []byte(c.render()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
	reloaded := func() bool { return strings.Count(p.stderr.String(), done) > before }
	if !wait.Until(10*time.Second, 50*time.Millisecond, reloaded) {
		t.Fatalf("egressd did not log %q within 10s of SIGHUP", done)
	}
}

// stop sends SIGTERM, waits for a graceful exit and kills egressd if it
// does not come. It returns how egressd exited.
func (p *egressdProc) stop() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("egressd ignored SIGTERM for 10s and was killed")
	}
}
