// The UDP fast path: the socket-level part of the resolver, for the UDP
// listeners. It is these files and nothing else of the request path:
//
//	udpworkers.go       udpWorkers, the reader wrapper miekg/dns starts and
//	                    stops; the worker pool; udpResponse
//	udpreader.go        the reading loops and the hand-over (this file)
//	udpbatch_linux.go   recvmmsg/sendmmsg batches for address-bound sockets
//	pollyield_linux.go  letting the runtime poll while the reader is busy
//	wirequery.go        reading common queries without dns.Msg.Unpack
//
// Its contract with the request path (handler.go) is two calls, after
// admitQuery has fixed the query's configuration and applied the rate
// limit once:
//
//   - Stage 1, Server.answerReady, on the reader: it answers from what is
//     at hand without waiting (denials, hosts and local answers, cache hits
//     whose addresses the firewall already has in effect), and the reader
//     then writes the answer with Server.reply; or it reports that the
//     query must be handed over, having sent and counted nothing.
//   - Stage 2, Server.serve, on a worker: the reader first takes an
//     in-flight slot for the query (none free: dropped, see overInFlight),
//     then hands the query and its progress (the policy and decision stage
//     1 read, the vetted answer it found) to a worker, which runs the rest
//     of the path (upstream exchange, firewall push), answers and releases
//     the slot.
//
// TCP and any other socket go through Server.ServeDNS, which runs stage 2
// alone on the connection's goroutine.

package resolver

import (
	"encoding/binary"
	"net"
	"runtime"
	"time"

	"github.com/miekg/dns"
)

// udpReader is the state of one reading goroutine.
type udpReader struct {
	u        *udpWorkers
	yielder  *pollYield
	answered int // in a row since the last yield
	yields   int
}

// serveBatches reads and answers an address-bound socket a batch of
// datagrams at a time (recvmmsg, sendmmsg).
func (r *udpReader) serveBatches(conn *net.UDPConn, b *udpBatch) error {
	inline := &udpResponse{conn: conn, batch: b}
	for {
		n, err := b.read()
		if err != nil {
			return err
		}
		received := time.Now() // one clock read for the batch: they arrived together
		for i := range n {
			msg, from, whole := b.datagram(i)
			inline.peer, inline.slot = from, i
			if !whole {
				r.u.tooLong(inline, msg)
				continue
			}
			r.handle(inline, msg, received)
		}
		for _, err := range b.flush() {
			r.u.s.log.Debug("cannot write answer", "err", err)
		}
		r.maybeYield()
	}
}

// serveSessions reads a datagram at a time with miekg/dns's sessions:
// for wildcard sockets, whose answers must leave from the address each
// query came to (control messages), and for any socket batches cannot use.
func (r *udpReader) serveSessions(conn *net.UDPConn) error {
	buf := make([]byte, dns.MaxMsgSize)
	inline := &udpResponse{conn: conn, buf: make([]byte, 0, advertisedUDPSize+optLen)}
	for {
		n, session, err := dns.ReadFromSessionUDP(conn, buf)
		if err != nil {
			return err
		}
		inline.session, inline.peer = session, session.RemoteAddr().(*net.UDPAddr).AddrPort()
		r.handle(inline, buf[:n], time.Now())
		r.maybeYield()
	}
}

// handle answers one datagram through inline when stage 1 can
// (answerReady), and otherwise hands it, with what stage 1 settled, to a
// worker.
func (r *udpReader) handle(inline *udpResponse, msg []byte, received time.Time) {
	u := r.u
	q, ok := u.parse(inline, msg)
	if !ok {
		return
	}
	c := caller{start: received, addr: inline.client(), udp: true}
	if !u.s.admitQuery(inline, &q, c) {
		r.answered++
		return
	}
	var p progress
	if u.s.answerReady(c.addr, &q, &p) {
		u.s.reply(inline, &q, c, &p.o)
		r.answered++
		return
	}
	// It needs an upstream or the firewall: a worker waits for it in an
	// in-flight slot, if the client's share and the total leave one.
	slot, refused := u.s.inFlight.acquire(c.addr)
	if refused != "" {
		u.s.overInFlight(inline, &q, c, refused)
		return
	}
	u.busy.Add(1)
	u.wg.Add(1)
	job := udpJobs.Get().(*udpJob)
	*job = udpJob{w: udpResponse{conn: inline.conn, peer: inline.peer, session: inline.session}, q: q, caller: c, slot: slot, p: p}
	if inline.batch != nil {
		job.w.raw = inline.batch.replyTo(inline.slot)
	}
	select {
	case u.jobs <- job:
	default:
		go u.work(job)
	}
}

// maybeYield lets other goroutines run once the reader has answered
// yieldEvery datagrams in a row: under load the socket never runs dry and
// the reader never parks. Workers waiting for upstream answers need the
// runtime to poll the network, which only a parked reader lets it do (see
// pollYield); so does the metrics listener, less urgently.
func (r *udpReader) maybeYield() {
	if r.answered < yieldEvery {
		return
	}
	r.answered = 0
	r.yields++
	if r.yielder != nil && (r.u.busy.Load() > 0 || r.yields%(pollEvery/yieldEvery) == 0) {
		r.yielder.yield()
		return
	}
	runtime.Gosched()
}

// tooLong answers FORMERR to a datagram longer than the reader keeps, from
// its header, if the sender is a client; outsiders get nothing.
func (u *udpWorkers) tooLong(w *udpResponse, msg []byte) {
	if len(msg) < headerLen || !u.s.clientAllowed(w.client()) {
		return
	}
	var h dns.Header
	h.Bits = uint16(msg[offFlags])<<8 | uint16(msg[offFlags+1])
	if acceptQueries(h) != dns.MsgAccept {
		return
	}
	reply := make([]byte, headerLen)
	copy(reply, msg[:offFlags])
	flags := h.Bits&(0xF<<11|flagRD) | flagQR | dns.RcodeFormatError
	binary.BigEndian.PutUint16(reply[offFlags:], flags)
	w.Write(reply)
}
