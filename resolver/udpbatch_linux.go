package resolver

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpBatchSize is how many datagrams one recvmmsg may return and one
// sendmmsg may send. Under load a batch spares 2 x (size - 1) system calls
// and their per-call costs (entry, file lookup, address copy); when the
// socket holds fewer datagrams the call returns what there is.
const udpBatchSize = 32

// udpReadBuffer is the most of a query datagram the reader keeps. Queries
// are a few hundred bytes even with EDNS options; a longer one arrives
// truncated (MSG_TRUNC) and is answered FORMERR from its header.
const udpReadBuffer = 4096

// udpBatch reads and writes datagrams of one address-bound UDP socket in
// batches, with recvmmsg and sendmmsg. Answers go to the address the query
// came from, reusing the received socket address as is. Only the reader
// goroutine uses it.
//
// Both calls are made with RawSyscall: they never block (MSG_DONTWAIT),
// but a sendmmsg of 32 answers over loopback delivers each one before it
// returns and can take tens of microseconds. Made as ordinary system
// calls, sysmon would take the reader's P away during them and hand it to
// another thread, and the reader would wait for a P afterwards: a thread
// switch per batch, which cost more than the batching saved.
type udpBatch struct {
	rc syscall.RawConn

	in    [udpBatchSize]unix.Mmsghdr
	inIov [udpBatchSize]unix.Iovec
	names [udpBatchSize]unix.RawSockaddrInet6 // large enough for IPv4 too
	bufs  [udpBatchSize][]byte
	n     int // datagrams in the last read

	out    [udpBatchSize]unix.Mmsghdr
	outIov [udpBatchSize]unix.Iovec
	outBuf [udpBatchSize][]byte // lent for rendering answers
	queued int
	sent   int // of queued, during a flush
	errs   []error

	readFn, writeFn func(uintptr) bool
	readErr         syscall.Errno
}

func newUDPBatch(conn *net.UDPConn) (*udpBatch, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := newBatchBuffers()
	b.rc = rc
	return b, nil
}

// newBatchBuffers is a udpBatch with its buffers and headers linked, not
// yet tied to a socket.
func newBatchBuffers() *udpBatch {
	b := &udpBatch{}
	backing := make([]byte, udpBatchSize*udpReadBuffer)
	for i := range udpBatchSize {
		b.bufs[i] = backing[i*udpReadBuffer : (i+1)*udpReadBuffer : (i+1)*udpReadBuffer]
		b.inIov[i].Base = &b.bufs[i][0]
		b.in[i].Hdr.Iov = &b.inIov[i]
		b.in[i].Hdr.SetIovlen(1)
		b.in[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.out[i].Hdr.Iov = &b.outIov[i]
		b.out[i].Hdr.SetIovlen(1)
		b.outBuf[i] = make([]byte, 0, advertisedUDPSize+optLen)
	}
	b.readFn, b.writeFn = b.recv, b.send
	return b
}

// read waits for at least one datagram and returns how many it read.
func (b *udpBatch) read() (int, error) {
	b.n = 0
	if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	if b.readErr != 0 {
		return 0, b.readErr
	}
	return b.n, nil
}

func (b *udpBatch) recv(fd uintptr) bool {
	for i := range udpBatchSize {
		b.inIov[i].SetLen(udpReadBuffer)
		b.in[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		b.in[i].Hdr.Flags = 0
		b.in[i].Len = 0
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), udpBatchSize, unix.MSG_DONTWAIT, 0, 0)
	switch errno {
	case 0:
		b.n, b.readErr = int(n), 0
		return true
	case unix.EAGAIN:
		return false
	case unix.EINTR:
		return b.recv(fd)
	default:
		b.readErr = errno
		return true
	}
}

// datagram returns the i-th datagram of the last read, its sender, and
// whether it arrived whole.
func (b *udpBatch) datagram(i int) (msg []byte, from netip.AddrPort, whole bool) {
	h := &b.in[i]
	from = sockaddrAddrPort(&b.names[i])
	return b.bufs[i][:h.Len], from, h.Hdr.Flags&unix.MSG_TRUNC == 0
}

// sockaddrAddrPort reads an IPv4 or IPv6 socket address the kernel wrote.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), networkPort(&sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), networkPort(&sa.Port))
	}
	return netip.AddrPort{}
}

// networkPort reads a port stored in network byte order.
func networkPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// answerBuffer lends the buffer the next queued answer is rendered into.
// Each datagram gets at most one answer, so the batch never runs out; if it
// did, the answer would be rendered into a fresh slice and not queued.
func (b *udpBatch) answerBuffer() []byte {
	if b.queued == udpBatchSize {
		return nil
	}
	return b.outBuf[b.queued][:0]
}

// queue adds an answer to the i-th datagram of the last read to the batch
// flush sends. p is kept, not copied: it is the lent buffer or a slice the
// caller no longer uses.
func (b *udpBatch) queue(i int, p []byte) {
	if b.queued == udpBatchSize || len(p) == 0 {
		return
	}
	h := &b.out[b.queued]
	h.Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	h.Hdr.Namelen = b.in[i].Hdr.Namelen
	b.outIov[b.queued].Base = &p[0]
	b.outIov[b.queued].SetLen(len(p))
	if cap(p) > cap(b.outBuf[b.queued]) {
		b.outBuf[b.queued] = p[:0] // keep the larger buffer for next time
	}
	b.queued++
}

// flush sends the queued answers and returns the errors of those the
// kernel refused (each is skipped; the rest are still sent).
func (b *udpBatch) flush() []error {
	b.errs = b.errs[:0]
	if b.queued == 0 {
		return nil
	}
	b.sent = 0
	if err := b.rc.Write(b.writeFn); err != nil {
		b.errs = append(b.errs, err)
	}
	b.queued = 0
	return b.errs
}

func (b *udpBatch) send(fd uintptr) bool {
	for b.sent < b.queued {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.queued-b.sent), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.sent += int(n)
		case unix.EAGAIN:
			return false // wait until the socket can take more
		case unix.EINTR:
		default:
			// The first of the remaining answers was refused (for example
			// by an output firewall); skip it and send the others.
			b.errs = append(b.errs, errno)
			b.sent++
		}
	}
	return true
}

// rawReply is what a worker needs to send its answer with a raw sendto on
// a batched socket: the socket and the client's address as the kernel
// gave it.
type rawReply struct {
	rc      syscall.RawConn
	name    unix.RawSockaddrInet6
	namelen uint32
}

// replyTo is how to answer the i-th datagram of the last read from another
// goroutine, after the batch has moved on.
func (b *udpBatch) replyTo(i int) rawReply {
	return rawReply{rc: b.rc, name: b.names[i], namelen: b.in[i].Hdr.Namelen}
}

// rawSender sends workers' answers with raw non-blocking sendto calls. A
// UDP send that would block returns EAGAIN instead, so it need not be an
// ordinary system call, which would wake the runtime's sysmon thread (see
// udpBatch); on EAGAIN the answer goes through the socket's own write,
// which waits. Each worker has one, so sending allocates nothing.
type rawSender struct {
	to     *rawReply
	p      []byte
	sent   bool
	errno  syscall.Errno
	sendFn func(uintptr)
}

func newRawSender() *rawSender {
	s := &rawSender{}
	s.sendFn = s.send
	return s
}

// sendTo sends p to r without waiting; false when the socket had no room
// for it (or is closed) and p was not sent.
func (s *rawSender) sendTo(r *rawReply, p []byte) (bool, error) {
	if len(p) == 0 {
		return false, nil
	}
	s.to, s.p, s.sent, s.errno = r, p, false, 0
	err := r.rc.Control(s.sendFn)
	s.to, s.p = nil, nil
	if err != nil || !s.sent {
		return false, nil
	}
	if s.errno != 0 {
		return true, os.NewSyscallError("sendto", s.errno)
	}
	return true, nil
}

func (s *rawSender) send(fd uintptr) {
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.p[0])), uintptr(len(s.p)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&s.to.name)), uintptr(s.to.namelen))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return
		}
		s.sent, s.errno = true, errno
		return
	}
}
