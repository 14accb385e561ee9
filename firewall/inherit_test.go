package firewall

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/policy"
)

// TestRestartCarriesElementsOver starts a second backend on a table a
// first one filled, as a restarted egressd would: destinations the first
// one allowed stay allowed with the lifetime they had left, the new index
// knows them, and sets of groups the new config lacks are gone.
func TestRestartCarriesElementsOver(t *testing.T) {
	client, _ := linkedPair(t, "8080", "9050")
	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second,
		Groups: []GroupSpec{
			{Name: "clients", Clients: prefixes("10.98.0.0/24", "fd00:98::/64")},
			{Name: "retired", Clients: prefixes("10.97.0.0/24")},
		}}
	logs := &lockedbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	first, err := NewNFTables(spec, Options{NetNS: client.fd, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "carried over") {
		t.Errorf("first install in an empty namespace logged:\n%s", logs)
	}
	allowances := []Allowance{
		{Group: "clients", IPs: addrs("10.98.0.2", "2001:db8::2"), TTL: time.Minute, Name: "a.test."},
		{Group: "clients", IPs: addrs("10.98.0.3"), TTL: 2 * time.Minute, Name: "b.test.",
			Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 9000, To: 9100}}},
		{Group: "retired", IPs: addrs("192.0.2.7"), TTL: time.Minute, Name: "c.test."},
	}
	for _, a := range allowances {
		mustAllow(t, first, a)
	}
	portKey4 := func(port uint16) []byte {
		return portKey(netip.MustParseAddr("10.98.0.3").AsSlice(), policy.ProtoTCP, port)
	}
	type probe struct {
		set         string
		key, keyEnd []byte
	}
	probes := []probe{
		{"g_clients_d4", netip.MustParseAddr("10.98.0.2").AsSlice(), nil},
		{"g_clients_d6", netip.MustParseAddr("2001:db8::2").AsSlice(), nil},
		{"g_clients_p4", portKey4(9000), portKey4(9100)},
	}
	before := map[string]time.Duration{}
	for _, p := range probes {
		e, ok := findElement(elements(t, client, "egressd", p.set), p.key, p.keyEnd)
		if !ok {
			t.Fatalf("first backend: %x missing from %s", p.key, p.set)
		}
		before[p.set] = e.Expires
	}
	// The old process stops; its table stays (fail closed).
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	expectDial(t, client, "10.98.0.2:8080", true)

	spec.Groups = spec.Groups[:1]
	second := startNFTWith(t, client, spec, nil, Options{Logger: logger})
	if got := logs.String(); !strings.Contains(got, "carried_elements=3") {
		t.Errorf("restart logged no carry-over of 3 elements:\n%s", got)
	}
	for _, p := range probes {
		e, ok := findElement(elements(t, client, "egressd", p.set), p.key, p.keyEnd)
		if !ok {
			t.Errorf("after restart: %x missing from %s", p.key, p.set)
			continue
		}
		if e.Expires > before[p.set] || e.Expires < before[p.set]-3*time.Second {
			t.Errorf("after restart: %s element has %v left, want a little under %v", p.set, e.Expires, before[p.set])
		}
	}
	sets, err := client.conn(t).GetSets(&nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if s.Name == "g_retired_d4" {
			t.Errorf("set %s of a removed group survived the restart", s.Name)
		}
	}
	if err := second.Check(); err != nil {
		t.Errorf("Check after restart: %v", err)
	}
	expectDial(t, client, "10.98.0.2:8080", true)
	expectDial(t, client, "10.98.0.3:9050", true)
	expectDial(t, client, "10.98.0.3:8080", false)

	// The index was seeded: asking again for what is already live costs
	// no netlink batch.
	flushes := second.flushCount()
	mustAllow(t, second, allowances[0])
	mustAllow(t, second, allowances[1])
	if got := second.flushCount(); got != flushes {
		t.Errorf("re-allowing inherited elements sent %d batches, want none", got-flushes)
	}
}

// TestRestartSkipsSetsOfAnotherShape: a set whose key changed (here the
// scope) starts empty rather than taking elements that mean something else.
func TestRestartSkipsSetsOfAnotherShape(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	first, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	mustAllow(t, first, Allowance{Group: "servers", IPs: addrs("192.0.2.50"), TTL: time.Minute})
	_ = first.Close()

	spec.Scope = ScopeClient
	startNFT(t, ns, spec, nil)
	if got := elements(t, ns, "egressd", "g_servers_d4"); len(got) != 0 {
		t.Errorf("client-scoped set inherited %d elements of the group-scoped one", len(got))
	}
}
