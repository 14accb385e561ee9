// Package firewall pushes DNS-approved destinations into the packet filter.
package firewall

import (
	"context"
	"net/netip"
	"time"

	"github.com/egressd/egressd/policy"
)

// Allowance is one approved answer: the client's group may reach IPs
// (on Ports, or any port when Ports is empty) for TTL plus the grace period.
type Allowance struct {
	Group  string
	Client netip.Addr
	IPs    []netip.Addr
	Ports  []policy.PortRange
	TTL    time.Duration
}

// Enforcer installs allowances. Allow returns only once the allowance is in
// effect, so the answer may be sent afterwards.
type Enforcer interface {
	Allow(ctx context.Context, a Allowance) error
	Close() error
}
