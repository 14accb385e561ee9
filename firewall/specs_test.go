package firewall

import (
	"net/netip"
	"time"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func addrPorts(ss ...string) []netip.AddrPort {
	out := make([]netip.AddrPort, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddrPort(s)
	}
	return out
}

// goldenSpecs are the layouts checked against testdata/NAME.nft, both as
// rendered text and as built over netlink.
var goldenSpecs = map[string]Spec{
	"forward": {
		Table: "egressd", Hooks: []string{HookForward}, Grace: 30 * time.Second,
		DNS: addrPorts("10.0.0.53:53", "[fd00::53]:53", "0.0.0.0:53"),
		Groups: []GroupSpec{
			{Name: "servers", Clients: prefixes("10.1.0.0/16", "fd00:1::/64")},
			// More specific than servers: carved out of servers' set.
			{Name: "build-farm", Clients: prefixes("10.1.8.0/24", "10.9.0.7/32")},
		},
	},
	"output": {
		Table: "egressd", Hooks: []string{HookOutput}, Grace: 30 * time.Second, Mark: 0x2a, UID: 998,
		DNS:    addrPorts("127.0.0.1:5353", "[::1]:5353"),
		Groups: []GroupSpec{{Name: "host", Clients: prefixes("0.0.0.0/0", "::/0")}},
	},
	"scope_client": {
		Table: "egressd_c", Hooks: []string{HookForward, HookOutput}, Scope: ScopeClient, Mark: 7,
		DNS:    addrPorts("192.168.1.1:53"),
		Groups: []GroupSpec{{Name: "lan", Clients: prefixes("192.168.1.0/24", "2001:db8:1::/48")}},
	},
	// DNS over TLS and HTTPS to egressd's own addresses, TCP only.
	"encrypted_dns": {
		Table: "egressd", Hooks: []string{HookForward, HookOutput}, Mark: 0x2a, UID: 998,
		DNS:          addrPorts("10.0.0.53:53"),
		EncryptedDNS: addrPorts("10.0.0.53:853", "10.0.0.53:443", "[fd00::53]:853", "0.0.0.0:8853"),
		Groups:       []GroupSpec{{Name: "lan", Clients: prefixes("10.1.0.0/16", "fd00:1::/64")}},
	},
	"audit": {
		Table: "egressd", Hooks: []string{HookForward}, Audit: true,
		Groups: []GroupSpec{
			{Name: "office", Clients: prefixes("10.2.0.0/16")},
			{Name: "guests.wifi", Clients: prefixes("10.3.0.0/16"), Audit: true},
		},
	},
	// Inbound connections and sources in no group accepted, as before
	// either could be chosen.
	"forward_open": {
		Table: "egressd", Hooks: []string{HookForward}, AcceptInbound: true, AcceptUnlisted: true,
		Groups: []GroupSpec{{Name: "office", Clients: prefixes("10.2.0.0/16")}},
	},
	// Drop events to NFLOG for egressd to read; both also keeps the
	// kernel log line, here with a group in audit mode.
	"drop_events_nflog": {
		Table: "egressd", Hooks: []string{HookForward}, DropEvents: DropEventsNFLOG, NFLOGGroup: 5,
		Groups: []GroupSpec{{Name: "office", Clients: prefixes("10.2.0.0/16")}},
	},
	"drop_events_both": {
		Table: "egressd", Hooks: []string{HookForward}, DropEvents: DropEventsBoth, NFLOGGroup: 65535,
		Groups: []GroupSpec{
			{Name: "office", Clients: prefixes("10.2.0.0/16")},
			{Name: "trial", Clients: prefixes("10.4.0.0/16"), Audit: true},
		},
	},
	// A drop report rate and burst of the operator's choosing.
	"drop_events_rate": {
		Table: "egressd", Hooks: []string{HookForward}, DropEvents: DropEventsNFLOG, NFLOGGroup: 5,
		DropEventsRate: 500, DropEventsBurst: 50,
		Groups: []GroupSpec{{Name: "office", Clients: prefixes("10.2.0.0/16")}},
	},
	"drop_events_none": {
		Table: "egressd", Hooks: []string{HookForward}, DropEvents: DropEventsNone,
		Groups: []GroupSpec{{Name: "office", Clients: prefixes("10.2.0.0/16")}},
	},
	"group_audit": {
		Table: "egressd", Hooks: []string{HookForward},
		Groups: []GroupSpec{
			{Name: "office", Clients: prefixes("10.2.0.0/16")},
			{Name: "trial", Clients: prefixes("10.4.0.0/16"), Audit: true},
		},
	},
}
