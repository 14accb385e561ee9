//go:build !linux

package upstream

import "syscall"

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

func newUDPIO(size int) *udpIO { return &udpIO{buf: make([]byte, size)} }
