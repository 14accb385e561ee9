//go:build !linux

package upstream

import (
	"syscall"

	"github.com/miekg/dns"
)

// udpIO holds the read buffer; without raw system calls the exchange uses
// the socket's own Read and Write.
type udpIO struct {
	buf   []byte
	out   []byte
	n     int
	errno syscall.Errno

	readFn, writeFn func(uintptr) bool
}

const rawUDP = false

// udpReadSize holds any datagram: the socket's own Read cannot tell one
// that did not fit.
const udpReadSize = dns.MaxMsgSize

func newUDPIO(size int) *udpIO { return &udpIO{buf: make([]byte, size)} }
