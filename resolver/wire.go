package resolver

import (
	"encoding/binary"
	"errors"
)

// Offsets and bits of the DNS message header (RFC 1035 section 4.1.1).
const (
	headerLen = 12
	offFlags  = 2
	offQD     = 4
	offAR     = 10

	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
	flagZ  = 1 << 6
	flagAD = 1 << 5
	flagCD = 1 << 4

	typeOPT = 41
	// rrFixedLen is type, class, TTL and RDLENGTH after the owner name.
	rrFixedLen = 10
)

var errMalformed = errors.New("malformed DNS message")

// skipName returns the offset just past the (possibly compressed) name at
// off. Pointers are not followed: a name ends at its first pointer.
func skipName(msg []byte, off int) (int, error) {
	for {
		if off >= len(msg) {
			return 0, errMalformed
		}
		c := int(msg[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, nil
			}
			off += 1 + c
		case 0xC0:
			if off+2 > len(msg) {
				return 0, errMalformed
			}
			return off + 2, nil
		default:
			return 0, errMalformed
		}
	}
}

// questionEnd returns the offset just past the question section.
func questionEnd(msg []byte) (int, error) {
	if len(msg) < headerLen {
		return 0, errMalformed
	}
	off := headerLen
	for range binary.BigEndian.Uint16(msg[offQD:]) {
		end, err := skipName(msg, off)
		if err != nil || end+4 > len(msg) {
			return 0, errMalformed
		}
		off = end + 4
	}
	return off, nil
}

// rewriteTTLs walks every resource record of a packed message and replaces
// each TTL (except the OPT pseudo-record's, which holds flags) with
// update(ttl). It is how cached answers age and how TTLs are clamped
// without unpacking the message.
func rewriteTTLs(msg []byte, update func(ttl uint32) uint32) error {
	off, err := questionEnd(msg)
	if err != nil {
		return err
	}
	records := 0
	for i := offQD + 2; i < headerLen; i += 2 {
		records += int(binary.BigEndian.Uint16(msg[i:]))
	}
	for range records {
		off, err = skipName(msg, off)
		if err != nil || off+rrFixedLen > len(msg) {
			return errMalformed
		}
		if binary.BigEndian.Uint16(msg[off:]) != typeOPT {
			ttl := msg[off+4 : off+8]
			binary.BigEndian.PutUint32(ttl, update(binary.BigEndian.Uint32(ttl)))
		}
		off += rrFixedLen + int(binary.BigEndian.Uint16(msg[off+8:]))
		if off > len(msg) {
			return errMalformed
		}
	}
	return nil
}

// appendOPT appends an EDNS(0) OPT record advertising size, with the DO bit
// and the upper bits of an extended RCODE, and counts it in ARCOUNT.
func appendOPT(msg []byte, size uint16, do bool, extRcode uint8) []byte {
	var flags uint16
	if do {
		flags = 1 << 15
	}
	msg = append(msg,
		0,          // root owner name
		0, typeOPT, // TYPE
		byte(size>>8), byte(size), // CLASS carries the UDP payload size
		extRcode, 0, // extended RCODE, version 0
		byte(flags>>8), byte(flags),
		0, 0, // RDLENGTH
	)
	binary.BigEndian.PutUint16(msg[offAR:], binary.BigEndian.Uint16(msg[offAR:])+1)
	return msg
}
