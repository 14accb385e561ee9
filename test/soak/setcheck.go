package main

import (
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/google/nftables"
)

// setChecker reads egressd's destination sets in the gateway namespace
// over netlink, from a socket opened in that namespace. It is shared by
// the load workers; the nftables connection is not safe for concurrent
// use, so one check runs at a time.
type setChecker struct {
	mu    sync.Mutex
	conn  *nftables.Conn
	table *nftables.Table
	d4    string
	d6    string

	passed, failed int
	examples       []string // first failures, for the report
}

const maxExamples = 5

func newSetChecker(gw netns, table, group string) (*setChecker, error) {
	f, err := os.Open("/run/netns/" + gw.name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The netlink socket is bound to the namespace when it is opened, so
	// the file can be closed afterwards.
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())), nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("netlink socket in %s: %w", gw.name, err)
	}
	return &setChecker{
		conn:  conn,
		table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet},
		d4:    "g_" + group + "_d4",
		d6:    "g_" + group + "_d6",
	}, nil
}

func (c *setChecker) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.conn.CloseLasting()
}

// check looks up every address of one answer in the group's set for its
// family and records whether all were there.
func (c *setChecker) check(name string, ips []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing []netip.Addr
	present := map[string]map[netip.Addr]bool{}
	for _, ip := range ips {
		set := c.d4
		if ip.Is6() && !ip.Is4In6() {
			set = c.d6
		}
		elems, ok := present[set]
		if !ok {
			var err error
			elems, err = c.elements(set)
			if err != nil {
				c.fail(fmt.Sprintf("%s: reading set %s: %v", name, set, err))
				return
			}
			present[set] = elems
		}
		if !elems[ip.Unmap()] {
			missing = append(missing, ip)
		}
	}
	if len(missing) > 0 {
		c.fail(fmt.Sprintf("%s: %v not in the set when the answer arrived", name, missing))
		return
	}
	c.passed++
}

func (c *setChecker) fail(example string) {
	c.failed++
	if len(c.examples) < maxExamples {
		c.examples = append(c.examples, example)
	}
}

// elements lists a set's addresses. Sets are looked up by name on every
// call: a reload may replace them.
func (c *setChecker) elements(name string) (map[netip.Addr]bool, error) {
	set, err := c.conn.GetSetByName(c.table, name)
	if err != nil {
		return nil, err
	}
	elems, err := c.conn.GetSetElements(set)
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Addr]bool, len(elems))
	for _, e := range elems {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			out[a.Unmap()] = true
		}
	}
	return out, nil
}

// counts returns passed, failed and the first failure examples.
func (c *setChecker) counts() (int, int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.passed, c.failed, append([]string(nil), c.examples...)
}
