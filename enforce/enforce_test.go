package enforce_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The resolver reaches the packet filter only through this package: it
// links neither the nftables backend nor its netlink library.
func TestResolverDoesNotLinkTheBackend(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/egressd/egressd/resolver/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/egressd/egressd/firewall",
			strings.HasPrefix(dep, "github.com/google/nftables"),
			strings.HasPrefix(dep, "github.com/mdlayher/netlink"):
			t.Errorf("the resolver depends on %s", dep)
		}
	}
}
