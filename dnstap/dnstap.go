// Package dnstap writes the messages egressd exchanges with its clients and
// with its upstream servers as dnstap (https://dnstap.info): protocol
// buffer messages in Frame Streams, the format CoreDNS, Unbound, Knot and
// BIND write and SIEM pipelines read.
//
// An Output owns a bounded queue and one goroutine that writes it to a
// unix socket or a TCP address (bidirectional Frame Streams, reconnecting
// in the background) or to a file (unidirectional, what dnstap-read
// reads). The request path only copies a message and enqueues it: when
// the queue is full the message is dropped and counted, never waited for.
package dnstap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	dt "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd/resolver/upstream"
)

// Options configures an Output. Exactly one of Socket, Address and File
// is set.
type Options struct {
	Socket  string // unix socket path, a Frame Streams reader listens there
	Address string // HOST:PORT of a Frame Streams reader over TCP
	File    string // a file, replaced at start, closed with a STOP frame
	// Identity and Version fill the dnstap fields of the same names.
	Identity string
	Version  string
	// Queue is how many messages may wait for the writer; more are
	// dropped. DefaultQueue when 0.
	Queue int
	// Which messages are written.
	ClientQueries   bool
	ClientResponses bool
	Forwarder       bool

	Logger *slog.Logger
	// Timeout bounds a connection attempt, the handshake and each write;
	// Retry is the wait between connection attempts. Defaults when 0.
	Timeout time.Duration
	Retry   time.Duration
}

// Defaults.
const (
	DefaultQueue   = 10000
	DefaultTimeout = 5 * time.Second
	DefaultRetry   = 5 * time.Second
)

// event is one message as the request path hands it over: copies of the
// wire bytes, and the rest by value.
type event struct {
	typ        dt.Message_Type
	proto      dt.SocketProtocol
	queryAddr  netip.AddrPort
	respAddr   netip.AddrPort
	queryTime  time.Time
	respTime   time.Time
	queryMsg   []byte
	responseMs []byte
}

// Output writes dnstap messages. Its methods are safe for concurrent use
// and never block; a nil *Output writes nothing.
type Output struct {
	opts  Options
	queue chan event
	log   *slog.Logger

	identity, version []byte

	sent, dropped, lost atomic.Uint64

	servers sync.Map // upstream server string → serverAddr

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// Open starts the writer. A socket or address that does not accept yet is
// retried in the background; a file that cannot be created is an error.
func Open(o Options) (*Output, error) {
	n := 0
	for _, s := range []string{o.Socket, o.Address, o.File} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("dnstap: exactly one of socket, address and file")
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Retry <= 0 {
		o.Retry = DefaultRetry
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := &Output{
		opts:     o,
		queue:    make(chan event, o.Queue),
		log:      log,
		identity: []byte(o.Identity),
		version:  []byte(o.Version),
		done:     make(chan struct{}),
	}
	out.ctx, out.cancel = context.WithCancel(context.Background())
	if o.File != "" {
		f, err := os.OpenFile(o.File, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, fmt.Errorf("dnstap: %w", err)
		}
		w, err := framestream.NewWriter(f, &framestream.WriterOptions{ContentTypes: [][]byte{dt.FSContentType}})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("dnstap: %s: %w", o.File, err)
		}
		go out.runFile(f, w)
		return out, nil
	}
	go out.runSocket()
	return out, nil
}

// Sent, Dropped and Lost count messages: written and flushed; dropped
// because the queue was full; lost to a failed write or connection.
func (o *Output) Sent() uint64    { return o.sent.Load() }
func (o *Output) Dropped() uint64 { return o.dropped.Load() }
func (o *Output) Lost() uint64    { return o.lost.Load() }

// Close writes what is queued (as far as the destination takes it within
// Timeout), ends the stream with a STOP frame and stops the writer.
func (o *Output) Close() error {
	if o == nil {
		return nil
	}
	o.cancel()
	<-o.done
	return nil
}

func (o *Output) enqueue(e event) {
	select {
	case o.queue <- e:
	default:
		o.dropped.Add(1)
	}
}

// protoOf is the dnstap protocol of a client's transport.
func protoOf(tcp bool) dt.SocketProtocol {
	if tcp {
		return dt.SocketProtocol_TCP
	}
	return dt.SocketProtocol_UDP
}

// ClientQuery records a query as it arrived from client at local. msg is
// copied; the caller may reuse it.
func (o *Output) ClientQuery(client, local netip.AddrPort, tcp bool, received time.Time, msg []byte) {
	if !o.opts.ClientQueries {
		return
	}
	o.enqueue(event{typ: dt.Message_CLIENT_QUERY, proto: protoOf(tcp), queryAddr: client, respAddr: local,
		queryTime: received, queryMsg: clone(msg)})
}

// ClientResponse records the response sent to client for a query
// received at received. msg is copied.
func (o *Output) ClientResponse(client, local netip.AddrPort, tcp bool, received, sent time.Time, msg []byte) {
	if !o.opts.ClientResponses {
		return
	}
	o.enqueue(event{typ: dt.Message_CLIENT_RESPONSE, proto: protoOf(tcp), queryAddr: client, respAddr: local,
		queryTime: received, respTime: sent, responseMs: clone(msg)})
}

// Forwarded records a query sent to an upstream server (as configured:
// IP:PORT, tls://…, https://…) and its reply, if any, once the attempt
// is over: FORWARDER_QUERY with the reply's ID (the one the transport
// sent it with), then FORWARDER_RESPONSE. It implements upstream.Tap.
func (o *Output) Forwarded(server string, sent, received time.Time, query, reply *dns.Msg) {
	if !o.opts.Forwarder {
		return
	}
	a := o.server(server)
	q := *query
	if reply != nil {
		q.Id = reply.Id
	}
	if wire, err := q.Pack(); err == nil {
		o.enqueue(event{typ: dt.Message_FORWARDER_QUERY, proto: a.proto, respAddr: a.addr, queryTime: sent, queryMsg: wire})
	}
	if reply == nil {
		return
	}
	if wire, err := reply.Pack(); err == nil {
		o.enqueue(event{typ: dt.Message_FORWARDER_RESPONSE, proto: a.proto, respAddr: a.addr,
			queryTime: sent, respTime: received, responseMs: wire})
	}
}

// serverAddr is what dnstap says about an upstream server: its transport
// and, when configured as an IP literal, its address.
type serverAddr struct {
	proto dt.SocketProtocol
	addr  netip.AddrPort
}

func (o *Output) server(s string) serverAddr {
	if v, ok := o.servers.Load(s); ok {
		return v.(serverAddr)
	}
	a := serverAddr{proto: dt.SocketProtocol_UDP}
	if p, err := upstream.ParseAddr(s); err == nil {
		switch p.Proto {
		case upstream.TLS:
			a.proto = dt.SocketProtocol_DOT
		case upstream.HTTPS:
			a.proto = dt.SocketProtocol_DOH
		}
		if ap, err := netip.ParseAddrPort(p.HostPort()); err == nil {
			a.addr = ap
		}
	}
	o.servers.Store(s, a)
	return a
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// frame is e as a marshalled dnstap message.
func (o *Output) frame(e *event) ([]byte, error) {
	t := dt.Dnstap_MESSAGE
	m := &dt.Message{
		Type:            &e.typ,
		SocketProtocol:  &e.proto,
		QueryMessage:    e.queryMsg,
		ResponseMessage: e.responseMs,
	}
	family := func(a netip.Addr) {
		f := dt.SocketFamily_INET
		if a.Is6() && !a.Is4In6() {
			f = dt.SocketFamily_INET6
		}
		m.SocketFamily = &f
	}
	if e.queryAddr.IsValid() {
		a := e.queryAddr.Addr()
		family(a)
		m.QueryAddress = a.Unmap().AsSlice()
		m.QueryPort = proto.Uint32(uint32(e.queryAddr.Port()))
	}
	if e.respAddr.IsValid() {
		a := e.respAddr.Addr()
		if m.SocketFamily == nil {
			family(a)
		}
		m.ResponseAddress = a.Unmap().AsSlice()
		m.ResponsePort = proto.Uint32(uint32(e.respAddr.Port()))
	}
	if !e.queryTime.IsZero() {
		m.QueryTimeSec = proto.Uint64(uint64(e.queryTime.Unix()))
		m.QueryTimeNsec = proto.Uint32(uint32(e.queryTime.Nanosecond()))
	}
	if !e.respTime.IsZero() {
		m.ResponseTimeSec = proto.Uint64(uint64(e.respTime.Unix()))
		m.ResponseTimeNsec = proto.Uint32(uint32(e.respTime.Nanosecond()))
	}
	return proto.Marshal(&dt.Dnstap{Identity: o.identity, Version: o.version, Type: &t, Message: m})
}

// runFile writes the queue to a file until Close.
func (o *Output) runFile(f *os.File, w *framestream.Writer) {
	defer close(o.done)
	if !o.pump(w) {
		// A failed write leaves the writer broken: stop, and let the
		// queue fill and count what is dropped.
		o.log.Error("dnstap: cannot write file; no more dnstap messages until restart", "file", o.opts.File)
	}
	if err := w.Close(); err != nil {
		o.log.Warn("dnstap: cannot finish file", "file", o.opts.File, "err", err)
	}
	if err := f.Close(); err != nil {
		o.log.Warn("dnstap: cannot close file", "file", o.opts.File, "err", err)
	}
}

// runSocket connects, writes the queue while the connection lasts, and
// connects again after Retry, until Close. Messages wait in the queue
// while there is no connection; those that do not fit are dropped.
func (o *Output) runSocket() {
	defer close(o.done)
	network, addr := "tcp", o.opts.Address
	if o.opts.Socket != "" {
		network, addr = "unix", o.opts.Socket
	}
	failing := false
	for o.ctx.Err() == nil {
		conn, w, err := o.connect(network, addr)
		if err != nil {
			if !failing {
				o.log.Warn("dnstap: cannot connect; retrying", "address", addr, "err", err)
			}
			failing = true
			select {
			case <-o.ctx.Done():
			case <-time.After(o.opts.Retry):
			}
			continue
		}
		if failing {
			o.log.Info("dnstap: connected", "address", addr)
		}
		failing = false
		// Each write has Timeout (framestream sets the deadline), so a
		// reader that stops reading costs a reconnect, and Close waits at
		// most that long.
		if o.pump(w) {
			conn.SetDeadline(time.Now().Add(o.opts.Timeout))
			w.Close() // STOP, and the reader's FINISH
		} else {
			o.log.Warn("dnstap: connection lost; reconnecting", "address", addr)
		}
		conn.Close()
	}
	o.lost.Add(uint64(len(o.queue)))
}

func (o *Output) connect(network, addr string) (net.Conn, *framestream.Writer, error) {
	d := net.Dialer{Timeout: o.opts.Timeout}
	conn, err := d.DialContext(o.ctx, network, addr)
	if err != nil {
		return nil, nil, err
	}
	w, err := framestream.NewWriter(conn, &framestream.WriterOptions{
		ContentTypes:  [][]byte{dt.FSContentType},
		Bidirectional: true,
		Timeout:       o.opts.Timeout,
	})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, w, nil
}

// pump writes queued messages to w, flushing whenever the queue runs
// dry, until Close (then what is queued is written first: true) or a
// write fails (false).
func (o *Output) pump(w *framestream.Writer) bool {
	pending := uint64(0)
	flush := func() bool {
		if pending == 0 {
			return true
		}
		err := w.Flush()
		if err != nil {
			o.lost.Add(pending)
		} else {
			o.sent.Add(pending)
		}
		pending = 0
		return err == nil
	}
	write := func(e *event) bool {
		b, err := o.frame(e)
		if err != nil {
			o.lost.Add(1)
			return true
		}
		if _, err := w.WriteFrame(b); err != nil {
			o.lost.Add(pending + 1)
			pending = 0
			return false
		}
		pending++
		return true
	}
	for {
		select {
		case e := <-o.queue:
			if !write(&e) {
				return false
			}
			if len(o.queue) == 0 && !flush() {
				return false
			}
		case <-o.ctx.Done():
			for {
				select {
				case e := <-o.queue:
					if !write(&e) {
						return false
					}
				default:
					return flush()
				}
			}
		}
	}
}
