package policy_test

import (
	"fmt"
	"net/netip"

	"github.com/egressd/egressd/policy"
)

func ExampleEngine_Decide() {
	e, err := policy.Compile([]policy.GroupSpec{{
		Name:    "servers",
		Clients: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		Allow:   []string{"*.example.com", "api.example.com:443", "api.example.com:8443"},
		Deny:    []string{"files.example.com"},
	}}, nil, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	client := netip.MustParseAddr("10.1.2.3")
	for _, qname := range []string{"WWW.example.com.", "files.example.com.", "api.example.com.", "example.com."} {
		d := e.Decide(client, qname, 1)
		fmt.Printf("%s: %s by %q from %s ports %v\n", qname, d.Verdict, d.Rule, d.Source, d.Ports)
	}
	fmt.Println(e.Decide(netip.MustParseAddr("192.0.2.1"), "example.com.", 1).Rule)
	// Output:
	// WWW.example.com.: allow by "*.example.com" from group[servers].allow ports []
	// files.example.com.: deny by "files.example.com" from group[servers].deny ports []
	// api.example.com.: allow by "api.example.com:443, api.example.com:8443" from group[servers].allow ports [{6 443 443} {6 8443 8443}]
	// example.com.: deny by "default" from group[servers].default ports []
	// no-group
}
