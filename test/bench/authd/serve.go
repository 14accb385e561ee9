package main

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// socketBuffer is the kernel buffer asked for on each UDP socket, so
	// bursts from a resolver under load are not dropped.
	socketBuffer = 4 << 20
	tcpIdle      = 10 * time.Second
	maxTCPConns  = 256
	maxMsg       = 65535
)

// server answers from one zone on several SO_REUSEPORT UDP sockets (the
// kernel spreads flows over them) and one TCP listener.
type server struct {
	zone    *zone
	queries atomic.Uint64

	udp []*net.UDPConn
	tcp net.Listener
	wg  sync.WaitGroup
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var sockErr error
	err := c.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		if sockErr != nil {
			return
		}
		// Best effort: the kernel caps these at net.core.*mem_max.
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
	})
	if err != nil {
		return err
	}
	return sockErr
}

// listen binds udpSockets UDP sockets and one TCP listener on addr.
func (s *server) listen(ctx context.Context, addr string, udpSockets int) error {
	lc := net.ListenConfig{Control: reusePort}
	for range udpSockets {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			s.close()
			return err
		}
		s.udp = append(s.udp, pc.(*net.UDPConn))
		// With port 0 the rest must join the port the kernel picked.
		addr = pc.LocalAddr().String()
	}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		s.close()
		return err
	}
	s.tcp = ln
	return nil
}

func (s *server) serve() {
	for _, c := range s.udp {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveUDP(c)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serveTCP()
	}()
}

// close stops every socket and waits for the serving goroutines.
func (s *server) close() {
	for _, c := range s.udp {
		_ = c.Close()
	}
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	s.wg.Wait()
}

func (s *server) serveUDP(c *net.UDPConn) {
	in := make([]byte, maxMsg)
	out := make([]byte, 0, maxMsg)
	for {
		n, from, err := c.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.queries.Add(1)
		reply := s.zone.respond(in[:n], out[:0])
		if reply == nil {
			continue
		}
		_, _ = c.WriteToUDPAddrPort(reply, from)
	}
}

func (s *server) serveTCP() {
	sem := make(chan struct{}, maxTCPConns)
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		conn, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("authd: accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			_ = conn.Close() // over the connection cap
			continue
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer func() { <-sem }()
			s.serveConn(conn)
		}()
	}
}

// serveConn answers length-prefixed queries on one TCP connection until
// the peer closes it or stays idle for tcpIdle.
func (s *server) serveConn(conn net.Conn) {
	defer conn.Close()
	in := make([]byte, maxMsg)
	out := make([]byte, 0, maxMsg)
	frame := make([]byte, 0, maxMsg+2)
	for {
		_ = conn.SetDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(conn, in[:2]); err != nil {
			return
		}
		size := int(binary.BigEndian.Uint16(in))
		if _, err := io.ReadFull(conn, in[:size]); err != nil {
			return
		}
		s.queries.Add(1)
		reply := s.zone.respond(in[:size], out[:0])
		if reply == nil {
			return
		}
		frame = binary.BigEndian.AppendUint16(frame[:0], uint16(len(reply)))
		frame = append(frame, reply...)
		if _, err := conn.Write(frame); err != nil {
			return
		}
	}
}
