package resolver

import (
	"net"
	"net/netip"
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
// ReadUDP parses each datagram and answers it itself when stage 1 of the
// request path can (Server.answerReady: cache hits whose addresses the
// firewall already holds, denials), which spares the hand-off to another
// goroutine; the rest go to long-lived workers for stage 2 (starting one
// only when none is idle, ending after udpWorkerIdle without work). The
// reading loops and the two-stage contract are in udpreader.go. ReadUDP
// returns to miekg/dns only
// when reading fails, which is how miekg/dns's Shutdown stops it; before
// returning it waits for the queries being handled, so they are still
// answered.
//
// The reader applies what miekg/dns would have: the outsider filter,
// responses ignored (acceptQueries), FORMERR for a query that does not
// parse.
type udpWorkers struct {
	outsiderReader // reads TCP and generic packet conns as before

	jobs chan *udpJob  // unbuffered: a send succeeds only to an idle worker
	stop chan struct{} // closed when reading fails: idle workers end
	once sync.Once
	idle atomic.Int32
	busy atomic.Int32
	wg   sync.WaitGroup // queries being handled by workers

	idleFor time.Duration // a worker without work for this long ends
}

// workerAnswerBuffer is the size of a worker's answer buffer: room for
// nearly every plain answer (larger ones are rendered into one of their
// own).
const workerAnswerBuffer = 512

// udpWorkerIdle is how long a worker waits for another query before it
// ends.
const udpWorkerIdle = 10 * time.Second

// yieldEvery is how many datagrams the reader answers in a row before it
// lets waiting workers run. The batch reader checks after each batch.
const yieldEvery = 32

// pollEvery is how many datagrams the reader answers in a row, with no
// worker busy, before it lets the runtime poll the network anyway.
const pollEvery = 1024

// udpJob is a query stage 1 handed over, for stage 2. Jobs come from
// udpJobs and go back once served: handing a query over allocates nothing,
// and a worker's stack holds a pointer, not the job (a worker that serves
// a firewall batch itself runs deep; see work).
type udpJob struct {
	w      udpResponse // the worker serves &w
	q      query
	caller caller
	slot   inFlightSlot // the in-flight slot the job holds
	p      progress     // what stage 1 settled
}

var udpJobs = sync.Pool{New: func() any { return new(udpJob) }}

// udpWorkersFilter is a dns.DecorateReader for the UDP server.
func (s *Server) udpWorkersFilter(r dns.Reader) dns.Reader {
	return &udpWorkers{outsiderReader: outsiderReader{Reader: r, s: s}, jobs: make(chan *udpJob), stop: make(chan struct{}), idleFor: s.workerIdle}
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
	if b := batchFor(conn); b != nil {
		err = r.serveBatches(conn, b)
	} else {
		err = r.serveSessions(conn)
	}
	u.wg.Wait()
	u.once.Do(func() { close(u.stop) })
	return nil, nil, err
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
	u.s.tapWireQuery(w, m)
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

// batchFor returns batched I/O for conn, or nil for a wildcard socket
// (its answers need control messages) or one batches cannot use.
func batchFor(conn *net.UDPConn) *udpBatch {
	if isWildcard(conn) {
		return nil
	}
	b, err := newUDPBatch(conn)
	if err != nil {
		return nil
	}
	return b
}

// isWildcard reports whether conn listens on every address (0.0.0.0, ::).
func isWildcard(conn *net.UDPConn) bool {
	a, ok := conn.LocalAddr().(*net.UDPAddr)
	return !ok || a.IP.IsUnspecified()
}

// work serves job and then others until enough workers are idle.
func (u *udpWorkers) work(job *udpJob) {
	var idle *time.Timer
	sender := newRawSender()
	// The worker's answers are rendered here: each is sent before the
	// next job (Write does not return before the datagram left).
	buf := make([]byte, 0, workerAnswerBuffer)
	for {
		job.w.sender, job.w.buf = sender, buf
		u.s.serve(&job.w, &job.q, job.caller, &job.p)
		u.s.inFlight.release(job.slot)
		// Served and sent: nothing refers to the job any more.
		*job = udpJob{}
		udpJobs.Put(job)
		u.busy.Add(-1)
		u.wg.Done()
		if u.idle.Add(1) > maxIdleUDPWorkers {
			u.idle.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(u.idleFor)
		} else {
			idle.Reset(u.idleFor)
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
	buf     []byte // lent for rendering: the reader's own response's, a worker's

	// batch, when set, queues writes for the batch's next flush, as the
	// answer to the slot-th datagram of the batch.
	batch *udpBatch
	slot  int

	// raw, for a worker's response to a batched datagram, lets the
	// worker's sender write the answer with a raw system call.
	raw    rawReply
	sender *rawSender
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
	if w.raw.rc != nil && w.sender != nil {
		if sent, err := w.sender.sendTo(&w.raw, b); sent {
			if err != nil {
				return 0, err
			}
			return len(b), nil
		}
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
