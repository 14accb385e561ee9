// Package firewall pushes DNS-approved destinations into the packet filter.
package firewall

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/policy"
)

// The seam the resolver sees lives in package enforce; these names keep
// the firewall's own API whole.
type (
	Allowance       = enforce.Allowance
	Enforcer        = enforce.Enforcer
	InEffectChecker = enforce.InEffectChecker
	None            = enforce.None
)

// NewNone returns the backend that enforces nothing (enforce.NewNone).
func NewNone(logger *slog.Logger) *None { return enforce.NewNone(logger) }

// Recheck tells ReloadRecheck whether group may still reach dest, what
// names resolved to, from client with client scope (the zero Addr
// otherwise), and on which ports (nil: any). names is the query name, then
// the names it led to.
type Recheck func(group string, client, dest netip.Addr, names []string) (ports []policy.PortRange, ok bool)

// Hook names accepted in Spec.Hooks.
const (
	HookForward = "forward"
	HookOutput  = "output"
)

// Scope values accepted in Spec.Scope.
const (
	ScopeGroup  = "group"
	ScopeClient = "client"
)

// Values of Spec.DropEvents.
const (
	DropEventsLog   = "log"
	DropEventsNFLOG = "nflog"
	DropEventsBoth  = "both"
	DropEventsNone  = "none"
)

// Spec describes the ruleset egressd owns. It is built from the config and
// handed to Render, NewNFTables and Reload.
type Spec struct {
	Table string   // inet table name, replaced as a whole
	Hooks []string // HookForward and/or HookOutput
	// Grace is added to every answer TTL to form the element timeout.
	Grace time.Duration
	Scope string // ScopeGroup (default) or ScopeClient
	// Audit turns every group into audit mode: log would-be drops, accept.
	Audit  bool
	Groups []GroupSpec
	// DNS are egressd's own listen addresses; DNS to them is always allowed.
	DNS []netip.AddrPort
	// EncryptedDNS are egressd's own DNS-over-TLS and DNS-over-HTTPS listen
	// addresses; TCP to them is always allowed. DoT and DoH to any other
	// server needs an approval like every destination.
	EncryptedDNS []netip.AddrPort
	// Mark is the SO_MARK on egressd's upstream sockets; the output hook
	// lets packets carrying it pass when their socket also belongs to UID.
	// Zero disables the rule.
	Mark uint32
	// UID is the user egressd runs as (its effective uid at start). A mark
	// alone can be set by any process with CAP_NET_RAW; the socket owner
	// cannot be forged without becoming that user.
	UID uint32
	// AcceptInbound lets a grouped client answer connections opened to it
	// from outside on the forward hook (as established traffic). By default
	// its packets in a connection it did not open are judged by its group
	// chain like new ones. The output hook always accepts them, so a host's
	// own services keep answering.
	AcceptInbound bool
	// AcceptUnlisted lets new traffic from sources in no group pass. By
	// default the base chains drop it (and log, or only log in audit mode).
	AcceptUnlisted bool
	// DropEvents says where the drop rules report what they drop (and
	// audit mode what it would drop), rate-limited in the kernel:
	// DropEventsLog (the default, also ""), DropEventsNFLOG (NFLOG group
	// NFLOGGroup, for egressd to read), DropEventsBoth or DropEventsNone.
	DropEvents string
	NFLOGGroup uint16
	// DropEventsRate and DropEventsBurst bound the drop reports in the
	// kernel: packets a second per chain, after a burst (0: 10 and 5).
	DropEventsRate  uint32
	DropEventsBurst uint32
	// RemoveOnExit deletes the table on Close (fail open). By default the
	// table stays, so a stopped egressd keeps failing closed.
	RemoveOnExit bool
	// MaxAddressesPerAnswer caps the addresses of one Allowance (zero:
	// DefaultMaxAddressesPerAnswer); MaxElementsPerSet caps the elements
	// Allow puts in one set (zero: DefaultMaxElementsPerSet);
	// MaxElementsPerClient caps the live elements the answers of one
	// client (an IPv4 address, an IPv6 /64) added, over all sets (zero:
	// DefaultMaxElementsPerClient, or MaxElementsPerSet if that is less).
	// Past any, Allow fails with ErrLimit and adds nothing.
	MaxAddressesPerAnswer int
	MaxElementsPerSet     int
	MaxElementsPerClient  int
	// SetGCInterval is how often the kernel frees the expired elements of
	// the sets Allow fills (zero: the kernel's default, a second).
	// Expired elements never match, so it bounds only how long their memory
	// lingers; each collection walks the whole set.
	SetGCInterval time.Duration
}

// GroupSpec is one client group as the firewall sees it.
type GroupSpec struct {
	Name    string
	Clients []netip.Prefix
	Audit   bool // log would-be drops instead of dropping, for this group only
}
