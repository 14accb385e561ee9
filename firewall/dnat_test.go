package firewall

import (
	"testing"
	"time"

	"github.com/egressd/egressd/internal/testfile"
	"github.com/egressd/egressd/policy"
)

// serviceNAT plays kube-proxy: Service addresses in 10.96.0.0/12 are
// rewritten to backends in the server namespace before filtering.
// 10.96.0.12 maps to an address that was itself approved, the others
// to addresses nobody approved directly.
func serviceNAT(hook string) string {
	return `table ip svc {
	chain dstnat {
		type nat hook ` + hook + ` priority -100; policy accept;
		ip daddr 10.96.0.10 tcp dport 80 dnat to 10.98.0.2:8080
		ip daddr 10.96.0.11 tcp dport 80 dnat to 10.98.0.3:8080
		ip daddr 10.96.0.12 tcp dport 80 dnat to 10.98.0.3:9050
		ip daddr 10.96.0.13 tcp dport 80 dnat to 10.98.0.2:8080
	}
}
`
}

// dnatAllowances: the name of Service .10 resolved to its address (any
// port), that of .11 with a port policy, a plain destination 10.98.0.3:9050.
func dnatAllowances() []Allowance {
	return []Allowance{
		{Group: "clients", IPs: addrs("10.96.0.10"), TTL: time.Minute},
		{Group: "clients", IPs: addrs("10.96.0.11"), TTL: time.Minute,
			Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 80, To: 80}}},
		{Group: "clients", IPs: addrs("10.98.0.3"), TTL: time.Minute,
			Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 9050, To: 9050}}},
	}
}

var dnatCases = []struct {
	name   string
	addr   string
	passes bool
}{
	{"approved Service address, DNAT to a backend nobody approved", "10.96.0.10:80", true},
	{"approved Service address and port", "10.96.0.11:80", true},
	{"rewritten to an approved destination", "10.96.0.12:80", true},
	{"Service address never approved", "10.96.0.13:80", false},
	{"backend of an approved Service, addressed directly", "10.98.0.2:8080", false},
	{"backend of an approved Service and port, addressed directly", "10.98.0.3:8080", false},
	{"approved plain destination", "10.98.0.3:9050", true},
}

// TestForwardHookMatchesDestinationBeforeDNAT routes a client through a
// gateway namespace that rewrites Service addresses (prerouting dstnat)
// and enforces the forward hook: what DNS approved is the address the
// client used, not the backend it was rewritten to.
func TestForwardHookMatchesDestinationBeforeDNAT(t *testing.T) {
	client, gw, _ := gatewayTopology(t, "8080", "9050")
	nftLoad(t, gw, serviceNAT("prerouting"))
	waitDial(t, client, "10.96.0.10:80")
	checkDNATCases(t, client, gw, HookForward, "10.97.0.0/24")
}

// TestOutputHookMatchesDestinationBeforeDNAT: the same for the host's own
// traffic, rewritten in output dstnat before the output filter sees it.
func TestOutputHookMatchesDestinationBeforeDNAT(t *testing.T) {
	client, _ := linkedPair(t, "8080", "9050")
	client.exec(t, "ip", "route", "add", "10.96.0.0/12", "dev", "c0")
	nftLoad(t, client, serviceNAT("output"))
	waitDial(t, client, "10.96.0.10:80")
	checkDNATCases(t, client, client, HookOutput, "10.98.0.0/24")
}

// checkDNATCases enforces hook in the enforcer namespace for a group of
// the given clients, approves dnatAllowances and dials every dnatCase
// from client.
func checkDNATCases(t *testing.T, client, enforcer *testNS, hook, clients string) {
	t.Helper()
	spec := Spec{Table: "egressd", Hooks: []string{hook}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes(clients)}}}
	n := startNFT(t, enforcer, spec, nil)
	for _, a := range dnatAllowances() {
		mustAllow(t, n, a)
	}
	for _, tc := range dnatCases {
		t.Run(tc.name, func(t *testing.T) { expectDial(t, client, tc.addr, tc.passes) })
	}
}

func nftLoad(t *testing.T, ns *testNS, ruleset string) {
	t.Helper()
	ns.exec(t, "nft", "-f", testfile.Write(t, t.TempDir()+"/rules.nft", ruleset))
}
