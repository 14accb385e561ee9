package upstream

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

// rawDoT is a DNS-over-TLS server on a loopback port whose behaviour per
// connection a test writes out frame by frame: it can hold replies back,
// answer out of order, or hang up with queries outstanding.
type rawDoT struct {
	port     string
	accepted atomic.Int32
	ended    atomic.Int32 // connections the client closed (EOF seen)
	queries  atomic.Int32 // query frames read, all connections
	reused   atomic.Int32 // queries whose ID was still in flight on their connection
}

// rawDoTConn is one accepted connection. Handlers call read and reply
// from one goroutine or several.
type rawDoTConn struct {
	srv  *rawDoT
	conn *tls.Conn
	n    int32 // accepted as the nth connection, from 1

	wmu      sync.Mutex
	mu       sync.Mutex
	inFlight map[uint16]bool
}

func startRawDoT(t *testing.T, pki *dnstest.PKI, serve func(c *rawDoTConn)) *rawDoT {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := &rawDoT{}
	_, s.port, _ = net.SplitHostPort(ln.Addr().String())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			c := &rawDoTConn{srv: s, conn: conn.(*tls.Conn), n: s.accepted.Add(1), inFlight: map[uint16]bool{}}
			wg.Go(func() {
				defer conn.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *rawDoT) url() string {
	return "tls://" + net.JoinHostPort("127.0.0.1", s.port) + "#" + dnstest.ServerName
}

// read returns the next query, or an error when the client closed the
// connection or nothing came within a few seconds (tests are bounded).
func (c *rawDoTConn) read() (*dns.Msg, error) {
	c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	var prefix [2]byte
	if _, err := io.ReadFull(c.conn, prefix[:]); err != nil {
		if errors.Is(err, io.EOF) {
			c.srv.ended.Add(1)
		}
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(prefix[:]))
	if _, err := io.ReadFull(c.conn, buf); err != nil {
		return nil, err
	}
	q := new(dns.Msg)
	if err := q.Unpack(buf); err != nil {
		return nil, err
	}
	c.srv.queries.Add(1)
	c.mu.Lock()
	if c.inFlight[q.Id] {
		c.srv.reused.Add(1)
	}
	c.inFlight[q.Id] = true
	c.mu.Unlock()
	return q, nil
}

// reply answers q with one A record for its name; the address, 10.N.0.0,
// tells the connection.
func (c *rawDoTConn) reply(q *dns.Msg) error {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Answer = []dns.RR{&dns.A{
		Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
		A:   net.IPv4(10, byte(c.n), 0, 0),
	}}
	c.mu.Lock()
	delete(c.inFlight, q.Id)
	c.mu.Unlock()
	return c.write(m)
}

func (c *rawDoTConn) write(m *dns.Msg) error {
	packed, err := m.Pack()
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
	_, err = c.conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(packed))), packed...))
	return err
}

// rawAnswerAll answers every query as it comes, in order.
func rawAnswerAll(c *rawDoTConn) {
	for {
		q, err := c.read()
		if err != nil {
			return
		}
		if c.reply(q) != nil {
			return
		}
	}
}

// burstName is a distinct name per query, so replies can be told apart.
func burstName(i int) string { return fmt.Sprintf("q%d.example.", i) }

// exchangeBurst sends n queries at once, each with its own name, and returns
// the replies and errors by query.
func exchangeBurst(u server, n int, timeout time.Duration) ([]*dns.Msg, []error) {
	replies, errs := make([]*dns.Msg, n), make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i], errs[i] = exchangeWithin(u, timeout, burstName(i), dns.TypeA)
		})
	}
	close(start)
	wg.Wait()
	return replies, errs
}

// checkBurstReplies fails unless every query got the reply to its own name.
func checkBurstReplies(t *testing.T, replies []*dns.Msg, errs []error) {
	t.Helper()
	for i := range replies {
		if errs[i] != nil {
			t.Errorf("query %d: %v", i, errs[i])
			continue
		}
		if len(replies[i].Answer) != 1 || replies[i].Answer[0].Header().Name != burstName(i) {
			t.Errorf("query %d for %s got %v", i, burstName(i), replies[i].Answer)
		}
	}
}

func testTLSUpstream(t *testing.T, pki *dnstest.PKI, s *rawDoT) *tlsUpstream {
	t.Helper()
	return newTestUpstreams(t, Options{RootCAs: pki.Roots}, s.url())[0].(*tlsUpstream)
}

func (u *tlsUpstream) openConns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// The server reads every query before answering any, then answers them in
// reverse order: all must share one connection, carry distinct IDs, and
// each get its own reply.
func TestTLSUpstreamPipelinesOutOfOrder(t *testing.T) {
	const n = 50 // below maxTLSPending: one connection
	pki := dnstest.NewPKI(t)
	srv := startRawDoT(t, pki, func(c *rawDoTConn) {
		var held []*dns.Msg
		for len(held) < n {
			q, err := c.read()
			if err != nil {
				return
			}
			held = append(held, q)
		}
		for _, q := range slices.Backward(held) {
			if c.reply(q) != nil {
				return
			}
		}
		rawAnswerAll(c)
	})
	u := testTLSUpstream(t, pki, srv)
	replies, errs := exchangeBurst(u, n, 5*time.Second)
	checkBurstReplies(t, replies, errs)
	if got := srv.accepted.Load(); got != 1 {
		t.Errorf("%d connections for %d queries, want 1", got, n)
	}
	if got := srv.reused.Load(); got != 0 {
		t.Errorf("%d queries reused an ID still in flight", got)
	}
}

// The pool opens a further connection only when the open ones are full,
// never more than its limit; beyond that, queries wait for a free slot.
func TestTLSUpstreamPoolLimits(t *testing.T) {
	tests := []struct {
		name                          string
		maxConns, maxPending, queries int
		wantConns                     int32
	}{
		{"fits one connection", 4, 8, 8, 1},
		{"spills into a second", 4, 8, 9, 2},
		{"three full connections", 4, 8, 24, 3},
		{"more than the pool holds", 2, 4, 20, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pki := dnstest.NewPKI(t)
			var mu sync.Mutex
			maxSeen := 0
			srv := startRawDoT(t, pki, func(c *rawDoTConn) {
				var wg sync.WaitGroup
				defer wg.Wait()
				for {
					q, err := c.read()
					if err != nil {
						return
					}
					c.mu.Lock()
					inFlight := len(c.inFlight)
					c.mu.Unlock()
					mu.Lock()
					maxSeen = max(maxSeen, inFlight)
					mu.Unlock()
					wg.Go(func() {
						time.Sleep(100 * time.Millisecond) // keep the queries overlapping
						c.reply(q)
					})
				}
			})
			u := testTLSUpstream(t, pki, srv)
			u.maxConns, u.maxPending = tt.maxConns, tt.maxPending
			replies, errs := exchangeBurst(u, tt.queries, 5*time.Second)
			checkBurstReplies(t, replies, errs)
			if got := srv.accepted.Load(); got != tt.wantConns {
				t.Errorf("%d connections, want %d", got, tt.wantConns)
			}
			mu.Lock()
			defer mu.Unlock()
			if maxSeen > tt.maxPending {
				t.Errorf("%d queries in flight on one connection, limit %d", maxSeen, tt.maxPending)
			}
		})
	}
}

// Connections the server closes, idle or with queries outstanding, are
// replaced without the queries noticing; a server that keeps hanging up
// fails them fast, long before their timeout.
func TestTLSUpstreamServerHangsUp(t *testing.T) {
	const timeout = 2 * time.Second
	tests := []struct {
		name string
		// serve handles the nth connection.
		serve       func(c *rawDoTConn)
		queries     int
		idleFirst   bool // one query, wait until the server hung up, then the rest
		wantErr     bool
		wantConns   int32
		wantQueries int32 // frames the server read
	}{
		{
			name: "closes an idle connection",
			serve: func(c *rawDoTConn) {
				if q, err := c.read(); err == nil {
					c.reply(q)
				}
			},
			queries: 3, idleFirst: true, wantConns: 3, wantQueries: 3,
		},
		{
			name: "closes with queries outstanding once",
			serve: func(c *rawDoTConn) {
				if c.n > 1 {
					rawAnswerAll(c)
					return
				}
				for range 10 {
					if _, err := c.read(); err != nil {
						return
					}
				}
			},
			queries: 10, wantConns: 2, wantQueries: 20,
		},
		{
			name: "always closes with queries outstanding",
			serve: func(c *rawDoTConn) {
				c.read()
			},
			queries: 4, wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pki := dnstest.NewPKI(t)
			srv := startRawDoT(t, pki, tt.serve)
			u := testTLSUpstream(t, pki, srv)
			start := time.Now()
			n := tt.queries
			if tt.idleFirst {
				for i := range n {
					resp, err := exchangeWithin(u, timeout, burstName(i), dns.TypeA)
					if err != nil || len(resp.Answer) != 1 {
						t.Fatalf("query %d: %v %v", i, resp, err)
					}
					dnstest.WaitFor(t, func() bool { return u.openConns() == 0 }) // the client saw the hang-up
				}
			} else {
				replies, errs := exchangeBurst(u, n, timeout)
				if !tt.wantErr {
					checkBurstReplies(t, replies, errs)
				}
				for i, err := range errs {
					if tt.wantErr && (err == nil || !errors.Is(err, errTLSConnLost) || classify(nil, err) != resultError) {
						t.Errorf("query %d: error %v, want a lost connection classified %s", i, err, resultError)
					}
				}
			}
			if elapsed := time.Since(start); elapsed > timeout/2 {
				t.Errorf("took %v; hang-ups must not wait for the %v timeout", elapsed, timeout)
			}
			if tt.wantConns != 0 {
				if got := srv.accepted.Load(); got != tt.wantConns {
					t.Errorf("%d connections, want %d", got, tt.wantConns)
				}
				if got := srv.queries.Load(); got != tt.wantQueries {
					t.Errorf("server read %d queries, want %d", got, tt.wantQueries)
				}
			}
			if tt.wantErr {
				if got := srv.queries.Load(); got > int32(maxTLSAttempts*n) {
					t.Errorf("server read %d queries for %d, want each sent at most %d times", got, n, maxTLSAttempts)
				}
			}
		})
	}
}

// A server that reads queries and never answers: the query times out on
// time, and the connection, on which nothing arrived since, is dropped so
// the next query does not queue behind a dead one.
func TestTLSUpstreamDropsStalledConnection(t *testing.T) {
	pki := dnstest.NewPKI(t)
	srv := startRawDoT(t, pki, func(c *rawDoTConn) {
		for {
			if _, err := c.read(); err != nil {
				return
			}
		}
	})
	u := testTLSUpstream(t, pki, srv)
	const timeout = 200 * time.Millisecond
	for i := range 2 {
		start := time.Now()
		_, err := exchangeWithin(u, timeout, "a.example.", dns.TypeA)
		if classify(nil, err) != resultTimeout {
			t.Fatalf("query %d: error %v, want a timeout", i, err)
		}
		if elapsed := time.Since(start); elapsed > timeout+200*time.Millisecond {
			t.Errorf("query %d took %v with a %v timeout", i, elapsed, timeout)
		}
		dnstest.WaitFor(t, func() bool { return srv.ended.Load() == int32(i+1) })
	}
	if got := srv.accepted.Load(); got != 2 {
		t.Errorf("%d connections, want a fresh one for the second query", got)
	}
}

// A connection without queries for the idle timeout is closed; the next
// query opens a new one.
func TestTLSUpstreamIdleTimeout(t *testing.T) {
	pki := dnstest.NewPKI(t)
	srv := startRawDoT(t, pki, rawAnswerAll)
	u := testTLSUpstream(t, pki, srv)
	u.idleTimeout = 150 * time.Millisecond
	for i := range 2 {
		if _, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		// Queries closer together than the timeout keep the connection.
		time.Sleep(u.idleTimeout / 3)
	}
	if got := srv.accepted.Load(); got != 1 {
		t.Fatalf("%d connections for queries %v apart, want 1", got, u.idleTimeout/3)
	}
	start := time.Now()
	dnstest.WaitFor(t, func() bool { return srv.ended.Load() == 1 })
	if elapsed := time.Since(start); elapsed < u.idleTimeout/2 {
		t.Errorf("closed after %v idle, want about %v", elapsed, u.idleTimeout)
	}
	if n := u.openConns(); n != 0 {
		t.Errorf("%d connections still in the pool", n)
	}
	if _, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if got := srv.accepted.Load(); got != 2 {
		t.Errorf("%d connections, want a new one after the idle close", got)
	}
}

// closeIdle (at shutdown) closes connections without queries in flight.
func TestTLSUpstreamCloseIdle(t *testing.T) {
	pki := dnstest.NewPKI(t)
	srv := startRawDoT(t, pki, rawAnswerAll)
	u := testTLSUpstream(t, pki, srv)
	if _, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	u.closeIdle()
	if n := u.openConns(); n != 0 {
		t.Errorf("%d connections in the pool after closeIdle", n)
	}
	dnstest.WaitFor(t, func() bool { return srv.ended.Load() == 1 })
}

// Some servers close a connection after so many queries, with more
// already sent on it. Those are retried on a connection opened after the
// close, never on an older one about to reach the same limit, so all of
// them are answered.
func TestTLSUpstreamServerQueryLimit(t *testing.T) {
	const perConn, queries = 16, 200
	pki := dnstest.NewPKI(t)
	srv := startRawDoT(t, pki, func(c *rawDoTConn) {
		for range perConn {
			q, err := c.read()
			if err != nil {
				return
			}
			time.Sleep(time.Millisecond) // let queries pile up
			if c.reply(q) != nil {
				return
			}
		}
	})
	u := testTLSUpstream(t, pki, srv)
	u.maxPending = perConn - 2
	replies, errs := exchangeBurst(u, queries, 5*time.Second)
	checkBurstReplies(t, replies, errs)
	if got := srv.accepted.Load(); got < queries/perConn {
		t.Errorf("%d connections for %d queries at %d a connection", got, queries, perConn)
	}
}

// A reply that comes after its query gave up is dropped, and since other
// replies kept arriving the connection stays in use.
func TestTLSUpstreamLateReply(t *testing.T) {
	pki := dnstest.NewPKI(t)
	srv := startRawDoT(t, pki, func(c *rawDoTConn) {
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			q, err := c.read()
			if err != nil {
				return
			}
			delay := time.Duration(0)
			switch q.Question[0].Name {
			case "slow.example.":
				delay = 600 * time.Millisecond
			case "quick.example.":
				delay = 50 * time.Millisecond
			}
			wg.Go(func() {
				time.Sleep(delay)
				c.reply(q)
			})
		}
	})
	u := testTLSUpstream(t, pki, srv)
	var slowErr, quickErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, slowErr = exchangeWithin(u, 300*time.Millisecond, "slow.example.", dns.TypeA) })
	wg.Go(func() { _, quickErr = exchangeWithin(u, 2*time.Second, "quick.example.", dns.TypeA) })
	wg.Wait()
	if classify(nil, slowErr) != resultTimeout {
		t.Errorf("slow query: %v, want a timeout", slowErr)
	}
	if quickErr != nil {
		t.Errorf("quick query: %v", quickErr)
	}
	time.Sleep(400 * time.Millisecond) // the slow reply arrives, late
	resp, err := exchangeWithin(u, 2*time.Second, "next.example.", dns.TypeA)
	if err != nil || len(resp.Answer) != 1 || resp.Answer[0].Header().Name != "next.example." {
		t.Fatalf("next query: %v %v", resp, err)
	}
	if got := srv.accepted.Load(); got != 1 {
		t.Errorf("%d connections, want the first kept", got)
	}
}
