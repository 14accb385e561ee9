// Package enforce is the seam between the resolver and the packet filter:
// what an approved answer asks of the firewall (Allowance), the interface a
// backend implements (Enforcer), and the backend that enforces nothing
// (None). The nftables backend lives in package firewall; the resolver
// depends only on this package.
package enforce

import (
	"context"
	"errors"
	"log/slog"
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
	// Name is the query name the answer was approved for and Targets the
	// names it led to (CNAME and HTTPS/SVCB targets), in order. A backend
	// remembers them (and, with client scope, the client) so that a reload
	// can ask the new policy about its live elements; empty Name: nothing
	// to remember. The backend keeps its own copy.
	Name    string
	Targets []string
	// Generation is that of the policy the answer was decided under
	// (policy.Engine.Generation); zero: not known. A backend whose
	// policy a reload has replaced since (a larger generation) asks the
	// current policy about the allowance before adding anything, and
	// refuses it with ErrStale when that policy denies it.
	Generation uint64
}

// Enforcer installs allowances. Allow returns only once the allowance is in
// effect, so the answer may be sent afterwards.
type Enforcer interface {
	Allow(ctx context.Context, a Allowance) error
	Close() error
}

// InEffectChecker is an Enforcer that can tell, without waiting, that
// Allow(a) would return at once because every element a asks for is
// already live long enough. A caller that must not wait (the UDP reader
// answering cache hits) asks first and passes the query on otherwise.
// InEffect neither keeps nor modifies a.IPs.
type InEffectChecker interface {
	InEffect(a Allowance) bool
}

// ErrLimit is returned (wrapped) by Allow when an allowance would pass a
// backend's caps (addresses per answer, elements per set). Nothing of the
// allowance is added and the elements already live stay; the resolver
// fails the answer closed whatever fail_open says.
var ErrLimit = errors.New("firewall: limit reached")

// ErrStale is returned (wrapped) by Allow for an allowance decided under a
// policy a reload has replaced since, when the current policy denies it
// (a name, a target, an address or the client's group, or the ports).
// Nothing of the allowance is added; the resolver decides the query again
// under the current policy.
var ErrStale = errors.New("firewall: answer decided under a replaced policy")

// None is the "none" backend: it enforces nothing. Use it where egressd
// only filters DNS, or lacks the privilege to manage nftables.
type None struct{}

// NewNone returns the no-op backend and logs, once, that destinations are
// not enforced.
func NewNone(logger *slog.Logger) *None {
	if logger == nil {
		logger = slog.Default()
	}
	logger.Warn(`firewall backend "none": resolved destinations are not enforced; clients can reach any address they know`)
	return &None{}
}

// Allow does nothing.
func (*None) Allow(context.Context, Allowance) error { return nil }

// Close does nothing.
func (*None) Close() error { return nil }
