package nflog

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// packetMsg builds an NFLOG packet message as the kernel sends it:
// nfgenmsg, then attributes (big-endian values).
func packetMsg(t *testing.T, prefix string, ts time.Time, payload []byte) netlink.Message {
	t.Helper()
	hdr := make([]byte, 4) // hw_protocol, hook, pad
	attrs := []netlink.Attribute{{Type: attrPacketHdr, Data: hdr}}
	if !ts.IsZero() {
		b := make([]byte, 16)
		binary.BigEndian.PutUint64(b, uint64(ts.Unix()))
		binary.BigEndian.PutUint64(b[8:], uint64(ts.Nanosecond()/1000))
		attrs = append(attrs, netlink.Attribute{Type: attrTimestamp, Data: b})
	}
	if prefix != "" {
		attrs = append(attrs, netlink.Attribute{Type: attrPrefix, Data: append([]byte(prefix), 0)})
	}
	if payload != nil {
		attrs = append(attrs, netlink.Attribute{Type: attrPayload, Data: payload})
	}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte{unix.AF_INET, 0, 0, 5}, b...)
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(subsysULOG<<8 | msgPacket)}, Data: data}
}

func ipv4(proto byte, src, dst string, fragOff uint16, l4 []byte) []byte {
	p := make([]byte, 20)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[6:], fragOff)
	p[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	return append(p, l4...)
}

func ipv6(proto byte, src, dst string, l4 []byte) []byte {
	p := make([]byte, 40)
	p[0] = 0x60
	p[6] = proto
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	return append(p, l4...)
}

func ports(s, d uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b, s)
	binary.BigEndian.PutUint16(b[2:], d)
	return b
}

func TestParse(t *testing.T) {
	ts := time.Unix(1764892800, 123456000)
	tests := []struct {
		name    string
		msg     func(t *testing.T) netlink.Message
		want    Event
		wantErr bool
	}{
		{"tcp over IPv4", func(t *testing.T) netlink.Message {
			return packetMsg(t, "egressd drop lan: ", ts, ipv4(unix.IPPROTO_TCP, "10.1.0.5", "192.0.2.7", 0x4000, ports(40000, 443)))
		}, Event{Prefix: "egressd drop lan: ", Time: ts, Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("192.0.2.7"), Proto: unix.IPPROTO_TCP, Sport: 40000, Dport: 443}, false},
		{"udp over IPv6", func(t *testing.T) netlink.Message {
			return packetMsg(t, "egressd drop unlisted: ", ts, ipv6(unix.IPPROTO_UDP, "fd00::5", "2001:db8::9", ports(5353, 853)))
		}, Event{Prefix: "egressd drop unlisted: ", Time: ts, Src: netip.MustParseAddr("fd00::5"), Dst: netip.MustParseAddr("2001:db8::9"), Proto: unix.IPPROTO_UDP, Sport: 5353, Dport: 853}, false},
		{"ICMP has no ports", func(t *testing.T) netlink.Message {
			return packetMsg(t, "p", time.Time{}, ipv4(unix.IPPROTO_ICMP, "10.1.0.5", "192.0.2.7", 0, ports(0x0800, 1)))
		}, Event{Prefix: "p", Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("192.0.2.7"), Proto: unix.IPPROTO_ICMP}, false},
		{"later fragment has no ports", func(t *testing.T) netlink.Message {
			return packetMsg(t, "p", time.Time{}, ipv4(unix.IPPROTO_TCP, "10.1.0.5", "192.0.2.7", 3, ports(1, 2)))
		}, Event{Prefix: "p", Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("192.0.2.7"), Proto: unix.IPPROTO_TCP}, false},
		{"ports cut off by the copy range", func(t *testing.T) netlink.Message {
			return packetMsg(t, "p", time.Time{}, ipv4(unix.IPPROTO_TCP, "10.1.0.5", "192.0.2.7", 0, []byte{1, 2}))
		}, Event{Prefix: "p", Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("192.0.2.7"), Proto: unix.IPPROTO_TCP}, false},
		{"short IPv4 header", func(t *testing.T) netlink.Message {
			return packetMsg(t, "p", time.Time{}, ipv4(unix.IPPROTO_TCP, "10.1.0.5", "192.0.2.7", 0, nil)[:12])
		}, Event{}, true},
		{"short IPv6 header", func(t *testing.T) netlink.Message {
			return packetMsg(t, "p", time.Time{}, ipv6(unix.IPPROTO_TCP, "fd00::5", "fd00::6", nil)[:30])
		}, Event{}, true},
		{"no payload", func(t *testing.T) netlink.Message { return packetMsg(t, "p", ts, nil) }, Event{}, true},
		{"not a packet message", func(t *testing.T) netlink.Message {
			m := packetMsg(t, "p", ts, ipv4(unix.IPPROTO_TCP, "10.1.0.5", "192.0.2.7", 0, ports(1, 2)))
			m.Header.Type = netlink.Error
			return m
		}, Event{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.msg(t))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Parse error = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if !got.Time.Equal(tc.want.Time) {
				t.Errorf("Time = %v, want %v", got.Time, tc.want.Time)
			}
			got.Time, tc.want.Time = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("Parse = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseIP: a dropped packet's first bytes are the sender's to choose;
// parseIP never panics, and what it accepts has addresses of the version
// the packet says, and ports only for TCP and UDP.
func FuzzParseIP(f *testing.F) {
	v4 := make([]byte, 24)
	v4[0], v4[9] = 0x45, unix.IPPROTO_TCP
	f.Add(v4)
	v6 := make([]byte, 44)
	v6[0], v6[6] = 0x60, unix.IPPROTO_UDP
	f.Add(v6)
	f.Add([]byte{0x4f})
	f.Fuzz(func(t *testing.T, p []byte) {
		var ev Event
		if err := parseIP(p, &ev); err != nil {
			return
		}
		if p[0]>>4 == 4 && (!ev.Src.Is4() || !ev.Dst.Is4()) || p[0]>>4 == 6 && (!ev.Src.Is6() || !ev.Dst.Is6()) {
			t.Fatalf("version %d packet gave %v -> %v", p[0]>>4, ev.Src, ev.Dst)
		}
		if ev.Proto != unix.IPPROTO_TCP && ev.Proto != unix.IPPROTO_UDP && (ev.Sport != 0 || ev.Dport != 0) {
			t.Fatalf("ports %d, %d for protocol %d", ev.Sport, ev.Dport, ev.Proto)
		}
	})
}
