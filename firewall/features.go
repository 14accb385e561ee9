package firewall

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Features are the optional kernel capabilities a layout uses. A kernel
// lacking one gets a table without the rules that need it, not no table.
type Features struct {
	// CtLabels: conntrack labels work (CONFIG_NF_CONNTRACK_LABELS and
	// nftables' `ct label`). They carry the prenat chains' approval of a
	// destination as the client addressed it, before DNAT rewrote it.
	CtLabels bool
}

// AllFeatures is every feature on: the layout Render prints.
func AllFeatures() Features { return Features{CtLabels: true} }

// Name of the ct label feature in egressd_firewall_features{feature}.
const featureCtLabel = "ct_label"

// missingLabelsNote explains, in logs and rendered rules, what a kernel
// without conntrack labels costs.
const missingLabelsNote = "this kernel has no conntrack labels (CONFIG_NF_CONNTRACK_LABELS), " +
	"so the prenat chains and ct label matches are left out: destinations reached through DNAT " +
	"(Kubernetes Service addresses, port forwards) are matched only by their translated address"

// kernelFeatures caches the probe of the kernel egressd runs on: a kernel's
// capabilities do not change while it runs, and every namespace shares them.
var kernelFeatures featureCache

// DetectFeatures reports which optional features the kernel supports,
// probing it through the network namespace netns (a file descriptor; zero
// for egressd's own) on the first successful call of the process and
// answering later calls from that result. Probing needs CAP_NET_ADMIN
// (ErrNoNetAdmin otherwise); it adds and deletes a throwaway table in one
// batch, so no listing ever shows it (change notifications do).
func DetectFeatures(netns int) (Features, error) {
	return kernelFeatures.get(func() (Features, error) { return probeFeatures(netns, nil) })
}

// featureCache remembers the first successful probe. A failed probe is not
// remembered: it says nothing about the kernel.
type featureCache struct {
	mu    sync.Mutex
	known bool
	f     Features
}

func (c *featureCache) get(probe func() (Features, error)) (Features, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known {
		return c.f, nil
	}
	f, err := probe()
	if err != nil {
		return Features{}, err
	}
	c.f, c.known = f, true
	return f, nil
}

// probeFeatures sends the probe batch into netns. send replaces Flush in
// tests, to play a kernel that rejects the batch; nil sends it for real.
func probeFeatures(netns int, send func(*nftables.Conn) error) (Features, error) {
	c, err := nftables.New(nftables.WithNetNSFd(netns))
	if err != nil {
		return Features{}, wrapPermission(fmt.Errorf("firewall: netlink: %w", err))
	}
	queueLabelProbe(c, fmt.Sprintf("egressd_probe_%d", os.Getpid()))
	if send == nil {
		send = (*nftables.Conn).Flush
	}
	labels, err := labelsFromProbe(send(c))
	if err != nil {
		return Features{}, err
	}
	return Features{CtLabels: labels}, nil
}

// queueLabelProbe queues a batch that creates table, with a regular chain
// holding the label statements the layout uses, and deletes it again. The
// kernel checks each expression when it adds the rule, so the batch fails
// exactly when egressd's own table would; when it succeeds the additions
// and the deletion commit together and leave nothing behind. The name is
// egressd's own (with the process id), so no one else's table is touched.
func queueLabelProbe(c *nftables.Conn, table string) {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "probe", Table: t})
	for _, r := range [][]stmt{{ctLabelSet(approvedLabel)}, {ctLabelIs(approvedLabel), accept}} {
		var exprs []expr.Any
		for _, st := range r {
			exprs = append(exprs, st.exprs(nil)...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	c.DelTable(t)
}

// labelsFromProbe reads the probe batch's outcome. A kernel built without
// conntrack labels rejects `ct label` (get and set alike) with EOPNOTSUPP;
// any other failure is no answer about labels and is returned.
func labelsFromProbe(err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EOPNOTSUPP):
		return false, nil
	}
	return false, wrapPermission(fmt.Errorf("firewall: probe for conntrack labels: %w", err))
}

// detectFeatures is DetectFeatures, or the test's stand-in kernel when
// opts has one (never cached: it must not decide for later backends).
func detectFeatures(opts Options) (Features, error) {
	if opts.probeSend != nil {
		return probeFeatures(opts.NetNS, opts.probeSend)
	}
	return DetectFeatures(opts.NetNS)
}

// Features reports the optional kernel features the installed table uses.
func (n *NFT) Features() Features { return n.features }

// reportFeatures publishes egressd_firewall_features and warns, once per
// backend, about a missing feature.
func (n *NFT) reportFeatures() {
	if n.metrics != nil {
		n.metrics.FirewallFeatures.WithLabelValues(featureCtLabel).Set(boolGauge(n.features.CtLabels))
	}
	if !n.features.CtLabels {
		n.log.Warn("firewall: "+missingLabelsNote, "table", n.spec.Table, "feature", featureCtLabel)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
