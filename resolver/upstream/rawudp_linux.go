package upstream

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpIO reads and writes a pooled upstream socket with non-blocking raw
// system calls, made through syscall.RawConn so the runtime's poller still
// waits when the socket is not ready.
//
// A UDP read or write on a non-blocking socket never blocks, so it does
// not need to be an ordinary system call: one of those tells the runtime
// the thread may block, which wakes the sysmon thread if it was asleep,
// and sysmon then polls every 20 µs for about a millisecond. At moderate
// load that cost every miss several wake-ups. RawSyscall tells the
// runtime nothing.
type udpIO struct {
	buf   []byte // read buffer
	n     int    // length of the last datagram read, more than len(buf) when it did not fit
	out   []byte // the datagram to write
	errno syscall.Errno

	readFn, writeFn func(uintptr) bool // bound once: passing them allocates nothing
}

// rawUDP reports whether udpIO makes raw system calls here.
const rawUDP = true

// udpReadSize is the read buffer of an exchange: MSG_TRUNC tells a
// datagram that did not fit (see udpIOs).
const udpReadSize = 4096

func newUDPIO(size int) *udpIO {
	x := &udpIO{buf: make([]byte, size)}
	x.readFn, x.writeFn = x.read, x.write
	return x
}

// read reads one datagram; it returns false when none is waiting.
func (x *udpIO) read(fd uintptr) bool {
	for {
		// MSG_TRUNC: the datagram's length even when it is longer than buf.
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&x.buf[0])), uintptr(len(x.buf)), unix.MSG_TRUNC, 0, 0)
		switch errno {
		case 0:
			x.n, x.errno = int(n), 0
			return true
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		default:
			x.n, x.errno = 0, errno
			return true
		}
	}
}

// write sends x.out; it returns false when the socket cannot take it now.
func (x *udpIO) write(fd uintptr) bool {
	for {
		var p unsafe.Pointer
		if len(x.out) > 0 {
			p = unsafe.Pointer(&x.out[0])
		}
		_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(p), uintptr(len(x.out)))
		switch errno {
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		default:
			x.errno = errno
			return true
		}
	}
}
