package resolver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// maxIdleUDPWorkers is how many workers wait for datagrams between bursts;
// workers beyond it end when their datagram is answered. The reader keeps
// reading while datagrams are queued, so a burst meets as many idle
// workers as it has datagrams only when this is above the number of
// queries clients keep in flight; a few KiB of stack each is cheap next to
// starting goroutines whose stacks grow again.
const maxIdleUDPWorkers = 1024

// udpWorkers replaces miekg/dns's UDP dispatch, which starts a goroutine
// per datagram: each new goroutine grows its stack while handling the
// query, and copying stacks cost more than the whole cache-hit path. Here
// ReadUDP parses each datagram and answers it itself when it needs neither
// an upstream nor a firewall push (cache hits, denials), which spares the
// hand-off to another goroutine; the rest go to long-lived workers
// (starting one only when none is idle). ReadUDP returns to miekg/dns only
// when reading fails, which is how miekg/dns's Shutdown stops it; before
// returning it waits for the queries being handled, so they are still
// answered.
//
// The reader applies what miekg/dns would have: the outsider filter,
// responses ignored (acceptQueries), FORMERR for a query that does not
// parse.
type udpWorkers struct {
	outsiderReader // reads TCP and generic packet conns as before

	jobs chan udpJob   // unbuffered: a send succeeds only to an idle worker
	stop chan struct{} // closed when reading fails: idle workers end
	once sync.Once
	idle atomic.Int32
	busy atomic.Int32
	wg   sync.WaitGroup // queries being handled by workers
}

// udpWorkerIdle is how long a worker waits for another query before it
// ends. A variable so tests can shorten it.
var udpWorkerIdle = 10 * time.Second

// yieldEvery is how many datagrams the reader answers in a row before it
// lets waiting workers run. The batch reader checks after each batch.
const yieldEvery = 32

// pollEvery is how many datagrams the reader answers in a row, with no
// worker busy, before it lets the runtime poll the network anyway.
const pollEvery = 1024

// udpJob is a query the reader could not answer from the cache.
type udpJob struct {
	w      *udpResponse
	q      query
	caller caller
}

// udpWorkersFilter is a dns.DecorateReader for the UDP server.
func (s *Server) udpWorkersFilter(r dns.Reader) dns.Reader {
	return &udpWorkers{outsiderReader: outsiderReader{Reader: r, s: s}, jobs: make(chan udpJob), stop: make(chan struct{})}
}

// ReadUDP serves datagrams until reading fails, then waits for the ones in
// hand and returns the error.
func (u *udpWorkers) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *dns.SessionUDP, error) {
	r := udpReader{u: u}
	var err error
	if r.yielder, err = newPollYield(); err != nil {
		u.s.log.Warn("UDP reader cannot make its yield pipe; upstream answers may wait up to 10 ms under load", "err", err)
	} else {
		defer r.yielder.close()
	}
	if isWildcard(conn) {
		err = r.serveSessions(conn)
	} else if b, berr := newUDPBatch(conn); berr == nil {
		err = r.serveBatches(conn, b)
	} else {
		err = r.serveSingly(conn)
	}
	u.wg.Wait()
	u.once.Do(func() { close(u.stop) })
	return nil, nil, err
}

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

// serveSingly reads and answers an address-bound socket a datagram at a
// time, where batches are not available.
func (r *udpReader) serveSingly(conn *net.UDPConn) error {
	buf := make([]byte, dns.MaxMsgSize)                                                // free again once the datagram is parsed
	inline := &udpResponse{conn: conn, buf: make([]byte, 0, advertisedUDPSize+optLen)} // only the reader writes through it
	for {
		n, peer, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		inline.peer = peer
		r.handle(inline, buf[:n], time.Now())
		r.maybeYield()
	}
}

// serveSessions reads a wildcard socket, whose answers must leave from the
// address each query came to (control messages), a datagram at a time.
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

// handle answers one datagram through inline when it needs neither an
// upstream nor a firewall push, and otherwise passes it to a worker.
func (r *udpReader) handle(inline *udpResponse, msg []byte, received time.Time) {
	u := r.u
	q, ok := u.parse(inline, msg)
	if !ok {
		return
	}
	c := caller{start: received, addr: inline.client(), udp: true}
	if !u.s.admitQuery(inline, &q, c) || u.s.serve(inline, &q, c, true) {
		r.answered++
		return
	}
	if u.busy.Load() >= maxInFlight {
		// serve would drop it too; do not start a goroutine for it.
		u.s.inFlight.dropped.Add(1)
		return
	}
	u.busy.Add(1)
	u.wg.Add(1)
	job := udpJob{w: &udpResponse{conn: inline.conn, peer: inline.peer, session: inline.session}, q: q, caller: c}
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

// parse returns the query in m, or false when it is dropped or has been
// answered FORMERR.
func (u *udpWorkers) parse(w *udpResponse, m []byte) (query, bool) {
	if len(m) < headerLen || !u.s.admitMessageFrom(m, w.client()) {
		return query{}, false
	}
	var h dns.Header
	h.Bits = uint16(m[offFlags])<<8 | uint16(m[offFlags+1])
	if acceptQueries(h) != dns.MsgAccept {
		return query{}, false
	}
	if q, ok := parseWireQuery(m, true); ok {
		return q, true
	}
	var req dns.Msg
	if err := req.Unpack(m); err != nil {
		// What miekg/dns answers: the header echoed with FORMERR.
		req.SetRcodeFormatError(&req)
		req.Zero = false
		req.Ns, req.Answer, req.Extra = nil, nil, nil
		w.WriteMsg(&req)
		return query{}, false
	}
	return parseQuery(&req, true), true
}

// isWildcard reports whether conn listens on every address (0.0.0.0, ::).
func isWildcard(conn *net.UDPConn) bool {
	a, ok := conn.LocalAddr().(*net.UDPAddr)
	return !ok || a.IP.IsUnspecified()
}

// work serves job and then others until enough workers are idle.
func (u *udpWorkers) work(job udpJob) {
	var idle *time.Timer
	for {
		u.s.serve(job.w, &job.q, job.caller, false)
		u.busy.Add(-1)
		u.wg.Done()
		if u.idle.Add(1) > maxIdleUDPWorkers {
			u.idle.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(udpWorkerIdle)
		} else {
			idle.Reset(udpWorkerIdle)
		}
		select {
		case job = <-u.jobs:
			u.idle.Add(-1)
		case <-u.stop:
			u.idle.Add(-1)
			return
		case <-idle.C:
			// A burst has passed: give back its goroutines (and their
			// stacks) instead of keeping up to maxIdleUDPWorkers forever.
			u.idle.Add(-1)
			return
		}
	}
}

// udpResponse is the dns.ResponseWriter for one datagram. A socket bound
// to one address answers from it without control messages (session nil);
// a wildcard socket needs the session's destination address so the answer
// leaves from the address the query came to.
type udpResponse struct {
	conn    *net.UDPConn
	peer    netip.AddrPort
	session *dns.SessionUDP
	buf     []byte // lent for rendering; only the reader's own response has one

	// batch, when set, queues writes for the batch's next flush, as the
	// answer to the slot-th datagram of the batch.
	batch *udpBatch
	slot  int
}

// answerBuffer lends a buffer that stays untouched until the answer
// rendered into it has been sent.
func (w *udpResponse) answerBuffer() []byte {
	if w.batch != nil {
		return w.batch.answerBuffer()
	}
	return w.buf
}

func (w *udpResponse) LocalAddr() net.Addr { return w.conn.LocalAddr() }

func (w *udpResponse) RemoteAddr() net.Addr {
	if w.session != nil {
		return w.session.RemoteAddr()
	}
	return net.UDPAddrFromAddrPort(w.peer)
}

func (w *udpResponse) Write(b []byte) (int, error) {
	if w.batch != nil {
		w.batch.queue(w.slot, b)
		return len(b), nil
	}
	if w.session != nil {
		return dns.WriteToSessionUDP(w.conn, b, w.session)
	}
	return w.conn.WriteToUDPAddrPort(b, w.peer)
}

// client is RemoteAddr as the ACL and rate limiter see it, without
// allocating a net.UDPAddr.
func (w *udpResponse) client() netip.Addr { return w.peer.Addr().Unmap() }

func (w *udpResponse) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *udpResponse) Close() error        { return nil }
func (w *udpResponse) TsigStatus() error   { return nil }
func (w *udpResponse) TsigTimersOnly(bool) {}
func (w *udpResponse) Hijack()             {}
