package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"syscall"
	"time"
	"unsafe"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// leanConn is the production nftConn: a lasting *nftables.Conn whose
// batches of element additions and deletions alone (the batch of every
// Allow, refresh and element restore) are encoded by elemBatch into a
// reused buffer and sent on the library's own socket, with the same bytes
// google/nftables would send. A batch that also changes the table (install,
// reload, restore of the layout, removal, a test's rejected message) goes
// through the library whole, as before: element messages queued before the
// first such message are handed to it first, in order.
type leanConn struct {
	*nftables.Conn
	eb *elemBatch // nil: every batch through the library
	// mixed: the library holds queued messages; until Flush everything
	// goes there.
	mixed  bool
	queued []queuedElems // what eb holds, to hand over if the batch turns mixed
	err    error         // a hand-over that failed, reported by Flush
}

type queuedElems struct {
	set   *nftables.Set
	elems []nftables.SetElement
	del   bool
}

// toLibrary moves the element messages queued so far into the library's
// batch, so the message about to be queued there follows them.
func (c *leanConn) toLibrary() {
	if c.mixed {
		return
	}
	c.mixed = true
	for _, q := range c.queued {
		var err error
		if q.del {
			err = c.Conn.SetDeleteElements(q.set, q.elems)
		} else {
			err = c.Conn.SetAddElements(q.set, q.elems)
		}
		if err != nil && c.err == nil {
			c.err = err
		}
	}
	clear(c.queued)
	c.queued = c.queued[:0]
	if c.eb != nil {
		c.eb.reset()
	}
}

func (c *leanConn) AddTable(t *nftables.Table) *nftables.Table {
	c.toLibrary()
	return c.Conn.AddTable(t)
}

func (c *leanConn) DelTable(t *nftables.Table) {
	c.toLibrary()
	c.Conn.DelTable(t)
}

func (c *leanConn) AddSet(s *nftables.Set, vals []nftables.SetElement) error {
	c.toLibrary()
	return c.Conn.AddSet(s, vals)
}

func (c *leanConn) AddChain(ch *nftables.Chain) *nftables.Chain {
	c.toLibrary()
	return c.Conn.AddChain(ch)
}

func (c *leanConn) AddRule(r *nftables.Rule) *nftables.Rule {
	c.toLibrary()
	return c.Conn.AddRule(r)
}

func (c *leanConn) SetAddElements(s *nftables.Set, vals []nftables.SetElement) error {
	return c.queueElements(s, vals, false)
}

func (c *leanConn) SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error {
	return c.queueElements(s, vals, true)
}

func (c *leanConn) queueElements(s *nftables.Set, vals []nftables.SetElement, del bool) error {
	if !c.mixed && c.eb != nil {
		err := c.eb.add(s, vals, del)
		if err == nil {
			c.queued = append(c.queued, queuedElems{set: s, elems: vals, del: del})
			return nil
		}
		if !errors.Is(err, errNotLean) {
			return err
		}
		// Something elemBatch does not encode: the library sends it all.
		c.toLibrary()
	}
	if del {
		return c.Conn.SetDeleteElements(s, vals)
	}
	return c.Conn.SetAddElements(s, vals)
}

// Flush sends the queued batch and waits for the kernel's answer to each
// message, through elemBatch when it holds only element messages.
func (c *leanConn) Flush() error {
	mixed, err := c.mixed, c.err
	c.mixed, c.err = false, nil
	clear(c.queued)
	c.queued = c.queued[:0]
	if !mixed && c.eb != nil && c.eb.msgs > 0 {
		return c.eb.flush()
	}
	if err != nil {
		// Part of the batch could not be queued: send none of it (the
		// caller replaces the connection after a failed flush).
		return err
	}
	return c.Conn.Flush()
}

// SetGCInterval sets how often the kernel collects the expired elements
// of each of sets, in a batch of its own sent at once: an update of sets
// that exist (google/nftables v0.3.0 cannot put the interval into the
// message that creates a set). errNotLean: a set elemBatch cannot
// describe, or no elemBatch.
func (c *leanConn) SetGCInterval(sets []*nftables.Set, d time.Duration) error {
	if c.eb == nil || c.mixed || c.eb.msgs > 0 {
		return errNotLean
	}
	for _, s := range sets {
		if err := c.eb.addSetGC(s, d); err != nil {
			c.eb.reset()
			return err
		}
	}
	return c.eb.flush()
}

// errNotLean: elemBatch does not encode this; the library must.
var errNotLean = errors.New("firewall: element not encoded by elemBatch")

// elemBatch builds and sends batches of NFT_MSG_NEWSETELEM and
// NFT_MSG_DELSETELEM messages: the same bytes (*nftables.Conn).
// SetAddElements/SetDeleteElements and Flush of google/nftables v0.3.0
// send for the element fields egressd uses (key, key end, timeout,
// comment), framed by NFNL_MSG_BATCH_BEGIN/END, into one buffer reused
// from batch to batch, and reads the kernel's error reports into another,
// on the socket the library dialed. Encoding by hand (not with
// netlink.AttributeEncoder, which allocates per nested attribute) keeps a
// batch free of allocations; the unit test compares every message with the
// library's bytes, but for the acknowledgement flag (see flush).
type elemBatch struct {
	raw  syscall.RawConn
	pid  uint32 // the socket's port id, as the library stamps it
	buf  []byte // batch begin, element messages; batch end is added by flush
	msgs int    // element messages in buf
	// begin is the sequence number of the batch begin message; the
	// element messages and the batch end follow it one by one, and the
	// next batch begins after them.
	begin uint32
	rbuf  []byte

	// Reused read and write callbacks (no closure per call).
	drainFn, writeFn func(fd uintptr) bool
	out              []byte
	n                int
	ioErr            error
}

// ackBuffer holds one error report, which carries the message it refers
// to, cut off beyond this (only its header counts).
const ackBuffer = 64 << 10

func newElemBatch(c *netlink.Conn) (*elemBatch, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	pid, err := portIDOf(c)
	if err != nil {
		return nil, err
	}
	return newElemBatchOn(raw, pid), nil
}

// newElemBatchOn writes batches stamped with port id pid to raw.
func newElemBatchOn(raw syscall.RawConn, pid uint32) *elemBatch {
	b := &elemBatch{raw: raw, pid: pid, begin: pid << 16, rbuf: make([]byte, ackBuffer)}
	b.writeFn = func(fd uintptr) bool {
		if len(b.out) > maxRawBatch {
			b.n, b.ioErr = unix.Write(int(fd), b.out)
		} else {
			b.n, b.ioErr = rawIO(unix.SYS_WRITE, fd, b.out)
		}
		return b.ioErr != unix.EAGAIN
	}
	b.drainFn = func(fd uintptr) bool {
		// Never waits: what the kernel answered is queued already.
		b.n, b.ioErr = rawIO(unix.SYS_READ, fd, b.rbuf)
		return true
	}
	b.reset()
	return b
}

// maxRawBatch is the largest batch written with a raw system call (see
// rawIO): about 500 elements with comments. The kernel applies a batch
// inside the write, so a larger one (a restore re-adding many elements)
// may hold the thread long enough that the runtime should be told.
const maxRawBatch = 64 << 10

// rawIO reads or writes p on the non-blocking netlink socket fd with a raw
// system call, which the Go runtime does not see. nfnetlink applies a batch
// inside the write that sends it and queues its reports before the write
// returns, so neither call waits: the read finds them queued, or EAGAIN
// when there are none. As ordinary system calls each would tell
// the runtime a thread entered the kernel: that wakes sysmon when it
// sleeps (it then polls every 20 µs for a while) and lets it hand the P to
// another thread during a write of tens of microseconds, a thread switch
// for nothing (see resolver/udpbatch_linux.go, which does the same).
func rawIO(trap, fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

const (
	nlmsgHeaderLen = unix.SizeofNlMsghdr
	nlaHeaderLen   = unix.SizeofNlAttr
	// NFTA_SET_ELEM_KEY_END, as google/nftables names it (x/sys lacks it).
	nftaSetElemKeyEnd = nftables.NFTA_SET_ELEM_KEY_END
	// NFTA_SET_FIELD_LEN: a concatenation field's length in NFTA_SET_DESC
	// (linux/netfilter/nf_tables.h; neither x/sys nor the library has it).
	nftaSetFieldLen = 1
)

// maxKeptBatch: a batch buffer grown past this (by a restore re-adding
// many elements) is not kept for the next batch.
const maxKeptBatch = 256 << 10

func (b *elemBatch) reset() {
	b.buf = b.buf[:0]
	if cap(b.buf) > maxKeptBatch {
		b.buf = nil
	}
	b.begin += uint32(b.msgs) + 2
	b.msgs = 0
	b.buf = b.appendBatchMsg(b.buf, unix.NFNL_MSG_BATCH_BEGIN, b.begin)
}

// appendBatchMsg appends a batch begin or end message.
func (b *elemBatch) appendBatchMsg(dst []byte, typ uint16, seq uint32) []byte {
	start := len(dst)
	dst = b.appendHeader(dst, typ, unix.NLM_F_REQUEST, seq)
	dst = append(dst, unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES)
	binary.NativeEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

func (b *elemBatch) appendHeader(dst []byte, typ, flags uint16, seq uint32) []byte {
	dst = binary.NativeEndian.AppendUint32(dst, 0) // length, set when done
	dst = binary.NativeEndian.AppendUint16(dst, typ)
	dst = binary.NativeEndian.AppendUint16(dst, flags)
	dst = binary.NativeEndian.AppendUint32(dst, seq)
	return binary.NativeEndian.AppendUint32(dst, b.pid)
}

// add queues one message adding (or deleting) vals, as the library's
// SetAddElements (SetDeleteElements) would. errNotLean: the library must
// encode it.
func (b *elemBatch) add(s *nftables.Set, vals []nftables.SetElement, del bool) error {
	if s.Anonymous {
		return errNotLean
	}
	for _, v := range vals {
		if v.IntervalEnd || len(v.Val) > 0 || v.VerdictData != nil || len(v.Comment) > 254 {
			return errNotLean
		}
	}
	typ := uint16(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM)
	if del {
		typ = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELSETELEM
	}
	start := len(b.buf)
	seq := b.begin + uint32(b.msgs) + 1
	dst := b.appendHeader(b.buf, typ, unix.NLM_F_REQUEST|unix.NLM_F_CREATE, seq)
	dst = append(dst, byte(s.Table.Family), unix.NFNETLINK_V0, 0, 0)
	dst = appendStringAttr(dst, unix.NFTA_SET_ELEM_LIST_SET, s.Name)
	dst = appendAttrHeader(dst, unix.NFTA_SET_ELEM_LIST_SET_ID, 4)
	dst = binary.BigEndian.AppendUint32(dst, s.ID)
	dst = appendStringAttr(dst, unix.NFTA_SET_ELEM_LIST_TABLE, s.Table.Name)
	list := len(dst)
	dst = appendNestStart(dst, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	for i, v := range vals {
		item := len(dst)
		dst = appendNestStart(dst, uint16(i+1))
		key := len(dst)
		dst = appendNestStart(dst, unix.NFTA_SET_ELEM_KEY)
		dst = appendAttr(dst, unix.NFTA_DATA_VALUE, v.Key)
		dst = nestEnd(dst, key)
		if len(v.KeyEnd) > 0 {
			end := len(dst)
			dst = appendNestStart(dst, nftaSetElemKeyEnd)
			dst = appendAttr(dst, unix.NFTA_DATA_VALUE, v.KeyEnd)
			dst = nestEnd(dst, end)
		}
		if s.HasTimeout && v.Timeout != 0 {
			dst = appendAttrHeader(dst, unix.NFTA_SET_ELEM_TIMEOUT, 8)
			dst = binary.BigEndian.AppendUint64(dst, uint64(v.Timeout.Milliseconds()))
		}
		if len(v.Comment) > 0 {
			// userdata.AppendString: type, length, the string and a NUL.
			dst = appendAttrHeader(dst, unix.NFTA_SET_ELEM_USERDATA, 2+len(v.Comment)+1)
			dst = append(dst, byte(userdata.NFTNL_UDATA_SET_ELEM_COMMENT), byte(len(v.Comment)+1))
			dst = append(dst, v.Comment...)
			dst = append(dst, 0)
			dst = pad(dst)
		}
		dst = nestEnd(dst, item)
	}
	if len(dst)-list > 0xffff {
		// The library would write a wrapped length; leave it to it.
		b.buf = b.buf[:start]
		return errNotLean
	}
	dst = nestEnd(dst, list)
	binary.NativeEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	b.buf = dst
	b.msgs++
	return nil
}

// setKeyTypes are the key types addSetGC can name: those of the sets
// Allow fills (the library keeps the kernel's type numbers unexported).
var setKeyTypes = map[string]uint32{
	nftables.TypeIPAddr.Name:      7,
	nftables.TypeIP6Addr.Name:     8,
	nftables.TypeInetProto.Name:   12,
	nftables.TypeInetService.Name: 13,
}

// setShape is how addSetGC describes s to the kernel: its flags, key type
// (concatenations composed as the library composes them) and, for a
// concatenation, each field's length. ok is false for a set it cannot
// describe: only plain and concatenated interval sets with timeouts.
func setShape(s *nftables.Set) (flags, keyType uint32, fields []uint32, ok bool) {
	if !s.HasTimeout || s.Anonymous || s.Constant || s.IsMap || s.Dynamic || s.Interval != s.Concatenation {
		return 0, 0, nil, false
	}
	flags = unix.NFT_SET_TIMEOUT
	types := []nftables.SetDatatype{s.KeyType}
	if s.Concatenation {
		flags |= unix.NFT_SET_INTERVAL | nftables.NFT_SET_CONCAT
		types = nftables.ConcatSetTypeElements(s.KeyType)
	}
	for _, t := range types {
		magic, known := setKeyTypes[t.Name]
		if !known {
			return 0, 0, nil, false
		}
		keyType = keyType<<nftables.SetConcatTypeBits | magic
		if s.Concatenation {
			fields = append(fields, t.Bytes)
		}
	}
	return flags, keyType, fields, true
}

// addSetGC queues an update of the existing set s (NFT_MSG_NEWSET without
// NLM_F_EXCL) that sets its garbage collection interval to d. The kernel
// accepts an update only if it describes the set as it is (flags, key
// type and length, a concatenation's field lengths), so it carries them as
// nft does; nothing else of the set changes.
func (b *elemBatch) addSetGC(s *nftables.Set, d time.Duration) error {
	flags, keyType, fields, ok := setShape(s)
	if !ok || s.KeyType.Bytes == 0 || d < time.Millisecond || d.Milliseconds() > math.MaxUint32 {
		return errNotLean
	}
	start := len(b.buf)
	seq := b.begin + uint32(b.msgs) + 1
	dst := b.appendHeader(b.buf, unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSET,
		unix.NLM_F_REQUEST|unix.NLM_F_CREATE, seq)
	dst = append(dst, byte(s.Table.Family), unix.NFNETLINK_V0, 0, 0)
	dst = appendStringAttr(dst, unix.NFTA_SET_TABLE, s.Table.Name)
	dst = appendStringAttr(dst, unix.NFTA_SET_NAME, s.Name)
	dst = appendUint32Attr(dst, unix.NFTA_SET_FLAGS, flags)
	dst = appendUint32Attr(dst, unix.NFTA_SET_KEY_TYPE, keyType)
	dst = appendUint32Attr(dst, unix.NFTA_SET_KEY_LEN, s.KeyType.Bytes)
	dst = appendUint32Attr(dst, unix.NFTA_SET_ID, s.ID)
	if len(fields) > 0 {
		desc := len(dst)
		dst = appendNestStart(dst, unix.NFTA_SET_DESC)
		concat := len(dst)
		dst = appendNestStart(dst, nftables.NFTA_SET_DESC_CONCAT)
		for _, f := range fields {
			elem := len(dst)
			dst = appendNestStart(dst, unix.NFTA_LIST_ELEM)
			dst = appendUint32Attr(dst, nftaSetFieldLen, f)
			dst = nestEnd(dst, elem)
		}
		dst = nestEnd(dst, concat)
		dst = nestEnd(dst, desc)
	}
	if s.Timeout != 0 {
		// The update sets the default timeout too: keep the set's.
		dst = appendAttrHeader(dst, unix.NFTA_SET_TIMEOUT, 8)
		dst = binary.BigEndian.AppendUint64(dst, uint64(s.Timeout.Milliseconds()))
	}
	dst = appendUint32Attr(dst, unix.NFTA_SET_GC_INTERVAL, uint32(d.Milliseconds()))
	binary.NativeEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	b.buf = dst
	b.msgs++
	return nil
}

func appendUint32Attr(dst []byte, typ uint16, v uint32) []byte {
	dst = appendAttrHeader(dst, typ, 4)
	return binary.BigEndian.AppendUint32(dst, v)
}

func pad(dst []byte) []byte {
	for len(dst)%4 != 0 {
		dst = append(dst, 0)
	}
	return dst
}

func appendAttrHeader(dst []byte, typ uint16, n int) []byte {
	dst = binary.NativeEndian.AppendUint16(dst, uint16(nlaHeaderLen+n))
	return binary.NativeEndian.AppendUint16(dst, typ)
}

func appendAttr(dst []byte, typ uint16, data []byte) []byte {
	dst = appendAttrHeader(dst, typ, len(data))
	return pad(append(dst, data...))
}

// appendStringAttr appends s with a terminating NUL.
func appendStringAttr(dst []byte, typ uint16, s string) []byte {
	dst = appendAttrHeader(dst, typ, len(s)+1)
	dst = append(dst, s...)
	return pad(append(dst, 0))
}

func appendNestStart(dst []byte, typ uint16) []byte {
	return appendAttrHeader(dst, typ|unix.NLA_F_NESTED, 0)
}

// maxElemListBytes bounds the items of one NFTA_SET_ELEM_LIST_ELEMENTS
// attribute: its length field is 16 bits, header included.
const maxElemListBytes = 0xffff - nlaHeaderLen

// elemListItemSize is how many bytes v takes in an element list of s, as
// elemBatch and google/nftables encode it.
func elemListItemSize(s *nftables.Set, v nftables.SetElement) int {
	align := func(n int) int { return (n + 3) &^ 3 }
	n := nlaHeaderLen + 2*nlaHeaderLen + align(len(v.Key)) // item, key nest, value
	if len(v.KeyEnd) > 0 {
		n += 2*nlaHeaderLen + align(len(v.KeyEnd))
	}
	if s.HasTimeout && v.Timeout != 0 {
		n += nlaHeaderLen + 8
	}
	if len(v.Comment) > 0 {
		n += nlaHeaderLen + align(2+len(v.Comment)+1)
	}
	if v.IntervalEnd {
		n += nlaHeaderLen + 4
	}
	return n
}

// nestEnd sets the length of the nested attribute starting at start to
// cover everything after it (the children, each padded).
func nestEnd(dst []byte, start int) []byte {
	binary.NativeEndian.PutUint16(dst[start:], uint16(len(dst)-start))
	return dst
}

// flush sends the batch in one write and reads what the kernel answered.
// Its messages ask for no acknowledgement (the library asks for one each):
// nfnetlink applies the batch inside the write and queues an error report
// for each refused message, and for a refused batch, before the write
// returns, whether asked for acknowledgements or not. So a read that finds
// nothing queued means every message was applied, and a batch costs one
// read instead of one per message. Errors read like the library's: each
// refused message a *netlink.OpError with the kernel's errno, joined; a
// refusal of the whole batch (EPERM, ENOMEM, reported on the batch begin)
// alone. A report the kernel could not queue (ENOBUFS on the read) is an
// error too: the batch's fate is unknown.
func (b *elemBatch) flush() error {
	defer b.reset()
	if b.msgs == 0 {
		return nil
	}
	b.buf = b.appendBatchMsg(b.buf, unix.NFNL_MSG_BATCH_END, b.begin+uint32(b.msgs)+1)
	b.out = b.buf
	if err := b.raw.Write(b.writeFn); err != nil {
		return fmt.Errorf("SendMessages: %w", err)
	}
	if b.ioErr != nil {
		return fmt.Errorf("SendMessages: %w", &netlink.OpError{Op: "sendmsg", Err: b.ioErr})
	}
	var errs []error
	var refused error // of the whole batch
	for {
		if err := b.raw.Read(b.drainFn); err != nil {
			return err
		}
		if b.ioErr == unix.EAGAIN {
			break // all read
		}
		if b.ioErr != nil {
			return &netlink.OpError{Op: "recvmsg", Err: b.ioErr}
		}
		msg := b.rbuf[:b.n]
		for len(msg) >= nlmsgHeaderLen {
			l := int(binary.NativeEndian.Uint32(msg))
			typ := binary.NativeEndian.Uint16(msg[4:])
			seq := binary.NativeEndian.Uint32(msg[8:])
			if l < nlmsgHeaderLen {
				return fmt.Errorf("conn.Receive: netlink message of %d bytes", l)
			}
			if typ == unix.NLMSG_ERROR && len(msg) >= nlmsgHeaderLen+4 {
				errno := -int32(binary.NativeEndian.Uint32(msg[nlmsgHeaderLen:]))
				var err error
				if errno != 0 {
					err = &netlink.OpError{Op: "receive", Err: unix.Errno(errno)}
				}
				switch {
				case seq == b.begin:
					// The batch was refused before any message was read.
					if err == nil {
						err = errors.New("conn.Receive: batch acknowledged without its messages")
					}
					if refused == nil {
						refused = err
					}
				case seq-b.begin >= 1 && seq-b.begin <= uint32(b.msgs) && err != nil:
					errs = append(errs, err)
				}
				// Anything else (an older batch's report) is not this
				// batch's: the read only empties the queue of it.
			}
			// A message cut off by the buffer is the last one read.
			l = (l + 3) &^ 3
			if l >= len(msg) {
				break
			}
			msg = msg[l:]
		}
	}
	if refused != nil {
		return refused
	}
	if len(errs) > 0 {
		return fmt.Errorf("conn.Receive: %w", errors.Join(errs...))
	}
	return nil
}
