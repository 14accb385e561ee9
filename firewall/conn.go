package firewall

import "github.com/google/nftables"

// nftConn is what the backend asks of its netlink connection: the part of
// *nftables.Conn that builds, sends and reads back its table. The owner
// goroutine holds one; in production it is a lasting *nftables.Conn in the
// managed namespace, in unit tests a fake that records each batch and
// keeps a table in memory, so rule building, batching, refreshes, caps and
// reloads are tested without root.
type nftConn interface {
	// Queued into the next batch.
	AddTable(*nftables.Table) *nftables.Table
	DelTable(*nftables.Table)
	AddSet(*nftables.Set, []nftables.SetElement) error
	AddChain(*nftables.Chain) *nftables.Chain
	AddRule(*nftables.Rule) *nftables.Rule
	SetAddElements(*nftables.Set, []nftables.SetElement) error
	SetDeleteElements(*nftables.Set, []nftables.SetElement) error
	// Flush sends the queued messages as one atomic batch.
	Flush() error

	// Read at once.
	ListTablesOfFamily(nftables.TableFamily) ([]*nftables.Table, error)
	ListChainsOfTableFamily(nftables.TableFamily) ([]*nftables.Chain, error)
	GetRules(*nftables.Table, *nftables.Chain) ([]*nftables.Rule, error)
	GetSets(*nftables.Table) ([]*nftables.Set, error)
	GetSetElements(*nftables.Set) ([]nftables.SetElement, error)

	CloseLasting() error
}

var _ nftConn = (*nftables.Conn)(nil)
