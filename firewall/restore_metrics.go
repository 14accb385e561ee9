package firewall

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons for egressd_firewall_restores_total.
const (
	restoreTable    = "table"    // the table was gone
	restoreLayout   = "layout"   // chains, rules or sets differed
	restoreElements = "elements" // someone deleted elements egressd still wants live
)

// restoreCounter registers egressd_firewall_restores_total on reg, or
// returns the one already registered there (a second NFT on the same
// registry shares it). A nil reg gives an unregistered counter.
func restoreCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_firewall_restores_total",
		Help: "Times egressd restored its nftables table or set elements after someone else changed them, by reason.",
	}, []string{"reason"})
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if errors.As(err, &dup) {
			if existing, ok := dup.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, err
	}
	for _, r := range []string{restoreTable, restoreLayout, restoreElements} {
		c.WithLabelValues(r) // export zeros so rate() works from the start
	}
	return c, nil
}
