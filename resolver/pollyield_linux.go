package resolver

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollYield lets a goroutine that never runs out of work step aside until
// the Go runtime has polled the network once.
//
// The UDP reader answers cache hits in a loop that, under load, always
// finds the next datagram waiting, so it never parks. With one P (one CPU,
// or a container limited to one) the scheduler then polls the network only
// from sysmon, every 10 ms: workers waiting for upstream answers sit that
// long although their answers have arrived. runtime.Gosched does not help,
// because the scheduler runs the yielding goroutine again before it polls.
// yield parks the caller on a pipe it has just written to: the scheduler
// runs everything runnable, finds nothing left, polls the network, and
// wakes the caller together with every goroutine whose socket became
// ready.
type pollYield struct {
	r       *os.File // the read end, registered with the runtime's poller
	rc      syscall.RawConn
	wfd     int // the write end, used only by raw writes
	written bool
	waitFn  func(uintptr) bool // y.wait, bound once so yield allocates nothing
}

func newPollYield() (*pollYield, error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return nil, err
	}
	r := os.NewFile(uintptr(fds[0]), "pollyield") // non-blocking, so the poller takes it
	rc, err := r.SyscallConn()
	if err != nil {
		r.Close()
		syscall.Close(fds[1])
		return nil, err
	}
	y := &pollYield{r: r, rc: rc, wfd: fds[1]}
	y.waitFn = y.wait
	return y, nil
}

// yield returns once the runtime has polled the network, having run every
// goroutine that was runnable.
func (y *pollYield) yield() {
	y.written = false
	y.rc.Read(y.waitFn) // an error means the pipe is closed: nothing to wait for
}

// wait is called by RawConn.Read after it has reset the pipe's readiness.
// Writing here, not before, means a poll that sees the byte before the
// caller parks leaves the pipe marked ready, so the wait cannot miss it.
// Both ends are non-blocking, so the write and the read are raw system
// calls: an ordinary one would wake the runtime's sysmon thread, and the
// reader yields like this whenever a worker waits for an upstream.
func (y *pollYield) wait(fd uintptr) bool {
	var b [1]byte
	if !y.written {
		y.written = true
		b[0] = 1
		if _, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(y.wfd), uintptr(unsafe.Pointer(&b[0])), 1); errno != 0 {
			return true // cannot signal: do not wait for a byte that will not come
		}
		return false
	}
	_, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), 1)
	return errno != unix.EAGAIN
}

func (y *pollYield) close() {
	y.r.Close()
	syscall.Close(y.wfd)
}
