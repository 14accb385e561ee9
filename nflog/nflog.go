// Package nflog reads packets that nftables rules send to an NFLOG group
// (`log group N`) over a NETLINK_NETFILTER socket, and parses them into
// drop events: the rule's prefix, the time, addresses, transport protocol
// and ports. It needs only the IP and transport headers, so the rules copy
// a few dozen bytes. A reader that falls behind loses events (the kernel
// reports ENOBUFS); Reader counts them instead of failing.
package nflog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Constants of linux/netfilter/nfnetlink.h and nfnetlink_log.h, which
// golang.org/x/sys/unix does not carry.
const (
	subsysULOG = 4 // NFNL_SUBSYS_ULOG

	msgPacket = 0 // NFULNL_MSG_PACKET
	msgConfig = 1 // NFULNL_MSG_CONFIG

	attrPacketHdr = 1  // NFULA_PACKET_HDR
	attrTimestamp = 3  // NFULA_TIMESTAMP
	attrPayload   = 9  // NFULA_PAYLOAD
	attrPrefix    = 10 // NFULA_PREFIX

	cfgAttrCmd  = 1 // NFULA_CFG_CMD
	cfgAttrMode = 2 // NFULA_CFG_MODE

	cfgCmdBind = 1 // NFULNL_CFG_CMD_BIND

	copyPacket = 2 // NFULNL_COPY_PACKET
)

// Event is one logged packet.
type Event struct {
	Prefix string    // the log statement's prefix
	Time   time.Time // kernel timestamp; zero when the kernel sent none
	Src    netip.Addr
	Dst    netip.Addr
	Proto  uint8  // IPPROTO_TCP, IPPROTO_UDP, ...
	Sport  uint16 // zero for protocols without ports
	Dport  uint16
}

// ErrNotPacket is returned by Parse for netlink messages that are not
// NFLOG packets (acks, errors, other subsystems).
var ErrNotPacket = errors.New("nflog: not an NFLOG packet message")

// Parse decodes one NFLOG packet message.
func Parse(m netlink.Message) (Event, error) {
	var ev Event
	if uint16(m.Header.Type) != subsysULOG<<8|msgPacket {
		return ev, ErrNotPacket
	}
	if len(m.Data) < 4 {
		return ev, fmt.Errorf("nflog: message of %d bytes has no nfgenmsg", len(m.Data))
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return ev, fmt.Errorf("nflog: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var payload []byte
	for ad.Next() {
		switch ad.Type() {
		case attrPrefix:
			ev.Prefix = ad.String()
		case attrTimestamp:
			b := ad.Bytes()
			if len(b) == 16 {
				sec := binary.BigEndian.Uint64(b[:8])
				usec := binary.BigEndian.Uint64(b[8:])
				ev.Time = time.Unix(int64(sec), int64(usec)*1000)
			}
		case attrPayload:
			payload = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil {
		return ev, fmt.Errorf("nflog: %w", err)
	}
	if payload == nil {
		return ev, errors.New("nflog: packet without payload")
	}
	if err := parseIP(payload, &ev); err != nil {
		return ev, err
	}
	return ev, nil
}

// parseIP reads addresses, protocol and ports from the start of an IPv4
// or IPv6 packet. Ports are read for TCP and UDP directly behind the
// header (IPv6 extension headers leave them zero).
func parseIP(p []byte, ev *Event) error {
	if len(p) < 1 {
		return errors.New("nflog: empty payload")
	}
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		if len(p) < 20 || ihl < 20 {
			return fmt.Errorf("nflog: short IPv4 header (%d bytes)", len(p))
		}
		ev.Proto = p[9]
		ev.Src = netip.AddrFrom4([4]byte(p[12:16]))
		ev.Dst = netip.AddrFrom4([4]byte(p[16:20]))
		// Only the first fragment carries the ports.
		if binary.BigEndian.Uint16(p[6:8])&0x1fff == 0 && len(p) >= ihl {
			l4 = p[ihl:]
		}
	case 6:
		if len(p) < 40 {
			return fmt.Errorf("nflog: short IPv6 header (%d bytes)", len(p))
		}
		ev.Proto = p[6]
		ev.Src = netip.AddrFrom16([16]byte(p[8:24]))
		ev.Dst = netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40:]
	default:
		return fmt.Errorf("nflog: IP version %d", p[0]>>4)
	}
	if (ev.Proto == unix.IPPROTO_TCP || ev.Proto == unix.IPPROTO_UDP) && len(l4) >= 4 {
		ev.Sport = binary.BigEndian.Uint16(l4[0:2])
		ev.Dport = binary.BigEndian.Uint16(l4[2:4])
	}
	return nil
}

// Reader receives the packets of one NFLOG group.
type Reader struct {
	conn  *netlink.Conn
	group uint16
	lost  atomic.Uint64
}

// Config of Open.
type Config struct {
	Group uint16
	// CopyRange bounds the bytes of each packet the kernel copies (the
	// rule's snaplen bounds it too); zero means 64.
	CopyRange uint32
	// ReadBuffer is the socket's receive buffer in bytes; zero keeps the
	// system default. A larger buffer loses fewer events in bursts.
	ReadBuffer int
	// NetNS, when non-zero, is a network namespace file descriptor to
	// open the socket in.
	NetNS int
}

// Open binds a netlink socket to cfg.Group with packet copy mode. Only one
// socket on the host (per network namespace) can bind a group; a second
// gets EBUSY.
func Open(cfg Config) (*Reader, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("nflog: %w", err)
	}
	if cfg.ReadBuffer > 0 {
		if err := conn.SetReadBuffer(cfg.ReadBuffer); err != nil {
			conn.Close()
			return nil, fmt.Errorf("nflog: read buffer: %w", err)
		}
	}
	r := &Reader{conn: conn, group: cfg.Group}
	copyRange := cfg.CopyRange
	if copyRange == 0 {
		copyRange = 64
	}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, copyRange)
	mode[4] = copyPacket
	for _, attr := range []netlink.Attribute{
		{Type: cfgAttrCmd, Data: []byte{cfgCmdBind}},
		{Type: cfgAttrMode, Data: mode},
	} {
		if err := r.config(attr); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return r, nil
}

// config sends one NFULNL_MSG_CONFIG attribute for the group and waits
// for the kernel's acknowledgement.
func (r *Reader) config(attr netlink.Attribute) error {
	b, err := netlink.MarshalAttributes([]netlink.Attribute{attr})
	if err != nil {
		return err
	}
	data := make([]byte, 4, 4+len(b))
	data[0] = unix.AF_UNSPEC
	data[1] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(data[2:], r.group)
	data = append(data, b...)
	_, err = r.conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(subsysULOG<<8 | msgConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: data,
	})
	if err != nil {
		return fmt.Errorf("nflog: configuring group %d: %w", r.group, err)
	}
	return nil
}

// Read blocks until packets arrive and returns their events, timed by the
// kernel or, where it sent no timestamp (locally sent packets have none),
// by the time they were received. Messages
// that do not parse are skipped. When the kernel dropped events because
// the socket buffer was full, Read counts them as lost (see Lost) and
// goes on reading.
func (r *Reader) Read() ([]Event, error) {
	for {
		msgs, err := r.conn.Receive()
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				r.lost.Add(1)
				continue
			}
			return nil, err
		}
		now := time.Now()
		evs := make([]Event, 0, len(msgs))
		for _, m := range msgs {
			if ev, err := Parse(m); err == nil {
				if ev.Time.IsZero() {
					ev.Time = now
				}
				evs = append(evs, ev)
			}
		}
		if len(evs) > 0 {
			return evs, nil
		}
	}
}

// Lost is how many times the kernel reported events lost to a full
// socket buffer (each report stands for one or more events).
func (r *Reader) Lost() uint64 { return r.lost.Load() }

// SetDeadline makes a blocked Read return with an error at t.
func (r *Reader) SetDeadline(t time.Time) error { return r.conn.SetReadDeadline(t) }

// Close ends the reader; a blocked Read returns an error.
func (r *Reader) Close() error { return r.conn.Close() }
