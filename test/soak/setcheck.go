package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
	"github.com/mdlayher/netlink"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// setChecker asks the kernel whether an address is in one of egressd's
// destination sets, over a netfilter netlink socket opened in the gateway
// namespace. It uses a single-element GETSETELEM request rather than a set
// dump: a dump of a large set that a commit interrupts can skip elements,
// while a lookup sees one generation of the set. The checker is shared by
// the load workers and runs one lookup at a time.
type setChecker struct {
	mu    sync.Mutex
	conn  *netlink.Conn
	table string
	d4    string
	d6    string
	start time.Time

	passed, failed int
	examples       []string // first failures, for the report
}

const maxExamples = 5

func newSetChecker(gw netnstest.Namespace, table, group string, start time.Time) (*setChecker, error) {
	f, err := os.Open("/run/netns/" + gw.Name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The socket belongs to the namespace it was opened in, so the file
	// can be closed afterwards.
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		return nil, fmt.Errorf("netfilter netlink socket in %s: %w", gw.Name, err)
	}
	return &setChecker{conn: conn, table: table, d4: "g_" + group + "_d4", d6: "g_" + group + "_d6", start: start}, nil
}

func (c *setChecker) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.Close()
}

// check looks up every address of one answer in the group's set for its
// family and records whether all were there. For a missing address it
// keeps looking for a short while, so the report can tell an answer that
// beat its firewall update from an update that never came.
func (c *setChecker) check(name string, ips []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	arrived := time.Since(c.start)
	for _, ip := range ips {
		ok, err := c.has(c.setFor(ip), ip)
		if err != nil {
			c.fail(fmt.Sprintf("t=%.3fs %s: looking up %s: %v", arrived.Seconds(), name, ip, err))
			return
		}
		if !ok {
			c.fail(fmt.Sprintf("t=%.3fs %s: %s not in %s when the answer arrived; %s",
				arrived.Seconds(), name, ip, c.setFor(ip), c.later(ip)))
			return
		}
	}
	c.passed++
}

func (c *setChecker) setFor(ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return c.d4
	}
	return c.d6
}

// later polls a missing address for up to 500 ms.
func (c *setChecker) later(ip netip.Addr) string {
	first := time.Now()
	for time.Since(first) < 500*time.Millisecond {
		time.Sleep(10 * time.Millisecond)
		if ok, err := c.has(c.setFor(ip), ip); err == nil && ok {
			return fmt.Sprintf("present %s later", time.Since(first).Round(time.Millisecond))
		}
	}
	return "still absent 500ms later"
}

// has sends NFT_MSG_GETSETELEM for one key. ENOENT means the element is
// not in the set (or has expired).
func (c *setChecker) has(set string, ip netip.Addr) (bool, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, c.table)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(list *netlink.AttributeEncoder) error {
		list.Nested(unix.NFTA_LIST_ELEM, func(elem *netlink.AttributeEncoder) error {
			elem.Nested(unix.NFTA_SET_ELEM_KEY, func(key *netlink.AttributeEncoder) error {
				key.Bytes(unix.NFTA_DATA_VALUE, ip.Unmap().AsSlice())
				return nil
			})
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return false, err
	}
	// nfgenmsg: family, version, resource id (big endian).
	data := append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...)
	msgs, err := c.conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request,
		},
		Data: data,
	})
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(msgs) > 0, nil
}

func (c *setChecker) fail(example string) {
	c.failed++
	if len(c.examples) < maxExamples {
		c.examples = append(c.examples, example)
	}
}

// counts returns passed, failed and the first failure examples.
func (c *setChecker) counts() (int, int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.passed, c.failed, append([]string(nil), c.examples...)
}

// selfTest proves the lookup can say both yes and no before the load
// relies on it: the address of a freshly resolved allowed name must be
// found, an address no name resolves to must not.
func (c *setChecker) selfTest(client netnstest.Namespace, server netip.AddrPort) error {
	ex := newExchanger(client, server, "udp")
	defer ex.close()
	q := new(dns.Msg)
	q.SetQuestion(fmt.Sprintf("h%d.%s", hotFirst, zoneOrigin), dns.TypeA)
	r, err := ex.exchange(q, 2*time.Second)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", q.Question[0].Name, err)
	}
	ips := addresses(r)
	if len(ips) == 0 {
		return fmt.Errorf("%s: no address in the answer (%s)", q.Question[0].Name, rcodeName(r.Rcode))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok, err := c.has(c.d4, ips[0]); err != nil || !ok {
		return fmt.Errorf("%s (answered for %s) not found in %s: %v", ips[0], q.Question[0].Name, c.d4, err)
	}
	never := netip.MustParseAddr("192.0.2.77") // documentation range: no answer holds it
	if ok, err := c.has(c.d4, never); err != nil || ok {
		return fmt.Errorf("lookup of %s, which nothing resolved to, said present=%t: %v", never, ok, err)
	}
	return nil
}
