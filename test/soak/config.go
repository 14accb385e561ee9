package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/internal/testfile"
)

// Names the policy is about. authd answers h<N>.bench.test; everything
// else in bench.test is NXDOMAIN, and names outside it never reach it.
const (
	zoneOrigin  = "bench.test."
	blockedZone = "blocked.test."
	// flipName is allowed by the wildcard in config A and denied by an
	// exact rule in config B, so its answer shows which config is live.
	flipName  = "h1.bench.test."
	groupName = "soak"
	tableName = "egressd_soak"
)

// soakTCPMaxConns is egressd's [server] tcp_max_conns in the soak: the
// load's 8 TCP connections, room for the ones replacing those egressd
// closes after 256 queries, and no more, since every connection egressd
// may hold counts in the goroutine bound (see goroutineLimits).
const soakTCPMaxConns = 16

// soakUpstreamTimeout is egressd's [upstream] timeout in the soak.
const soakUpstreamTimeout = time.Second

// policyVariant selects one of the configs the soak reloads between.
type policyVariant int

const (
	variantA      policyVariant = iota // flipName allowed
	variantB                           // flipName denied
	variantBroken                      // invalid: must be rejected on reload
)

func (v policyVariant) String() string {
	return [...]string{"A", "B", "broken"}[v]
}

// flipAllowed is whether flipName resolves under the variant.
func (v policyVariant) flipAllowed() bool { return v == variantA }

type configParams struct {
	topo        *topology
	queryLog    string
	variant     policyVariant
	memoryLimit uint64 // [server] memory_limit; 0 leaves it out
}

func (c configParams) render() string {
	var b strings.Builder
	backend := "none"
	if c.topo.namespaces {
		backend = "nftables"
	}
	ups := make([]string, len(c.topo.upstreams))
	for i, u := range c.topo.upstreams {
		ups[i] = u.String()
	}
	deny := []string{"*." + strings.TrimSuffix(blockedZone, ".")}
	if c.variant != variantA {
		deny = append(deny, strings.TrimSuffix(flipName, "."))
	}
	action := "nxdomain"
	if c.variant == variantBroken {
		action = "teleport" // not an action egressd knows
	}
	fmt.Fprintf(&b, "[server]\nlisten = %s\nclients = %s\ntcp_idle_timeout = \"30s\"\ntcp_max_conns = %d\n",
		tomlList([]string{c.topo.dns.String()}), tomlList(c.topo.clientNets), soakTCPMaxConns)
	if c.memoryLimit != 0 {
		fmt.Fprintf(&b, "memory_limit = %d\n", c.memoryLimit)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "[upstream]\nservers = %s\ntimeout = %q\n\n", tomlList(ups), soakUpstreamTimeout.String())
	b.WriteString("[cache]\nsize = 50000\nmax_ttl = \"1h\"\n\n")
	// max_elements_per_client: the load is one client address standing
	// for many hosts, and its cold names (a fifth of the queries, each a
	// new address that lives 5m15s) pass the default share within a run.
	fmt.Fprintf(&b, "[firewall]\nbackend = %q\ntable = %q\nhooks = [\"forward\"]\ngrace = \"15s\"\nmax_ttl = \"5m\"\nmax_elements_per_client = 65536\nremove_on_exit = true\n\n",
		backend, tableName)
	fmt.Fprintf(&b, "[log]\nqueries = %q\nsample_allowed = 100\nlevel = \"info\"\n\n", c.queryLog)
	fmt.Fprintf(&b, "[metrics]\nlisten = %q\n\n", c.topo.metrics.String())
	fmt.Fprintf(&b, "[[group]]\nname = %q\nclients = %s\nallow = %s\ndeny = %s\ndefault = \"deny\"\naction = %q\nallow_private_answers = true\n",
		groupName, tomlList(c.topo.clientNets), tomlList([]string{"*." + strings.TrimSuffix(zoneOrigin, ".")}), tomlList(deny), action)
	return b.String()
}

func tomlList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// writeConfig replaces path atomically, so egressd never reads half a file.
func writeConfig(path string, c configParams) error {
	return testfile.Replace(path, c.render())
}
