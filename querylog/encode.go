package querylog

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e as one JSON object followed by a newline.
//
// Unlike encoding/json with Entry's omitempty tags, every contract field is
// always written, so each line has the same keys and tools such as jq or a
// log shipper never need to guess whether a key is missing or empty. The
// result still decodes into Entry with encoding/json.
func AppendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","client":`...)
	b = appendString(b, e.Client)
	b = append(b, `,"group":`...)
	b = appendString(b, e.Group)
	b = append(b, `,"qname":`...)
	b = appendString(b, e.QName)
	b = append(b, `,"qtype":`...)
	b = appendString(b, e.QType)
	b = append(b, `,"decision":`...)
	b = appendString(b, e.Decision)
	b = append(b, `,"rule":`...)
	b = appendString(b, e.Rule)
	b = append(b, `,"source":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"action":`...)
	b = appendString(b, e.Action)
	b = append(b, `,"rcode":`...)
	b = appendString(b, e.RCode)
	b = append(b, `,"answers":[`...)
	for i, a := range e.Answers {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, a)
	}
	b = append(b, `],"ttl":`...)
	b = strconv.AppendUint(b, uint64(e.TTL), 10)
	b = append(b, `,"cached":`...)
	b = strconv.AppendBool(b, e.Cached)
	b = append(b, `,"upstream":`...)
	b = appendString(b, e.Upstream)
	b = append(b, `,"transport":`...)
	b = appendString(b, e.Transport)
	b = append(b, `,"duration_ms":`...)
	b = appendDuration(b, e.DurationMS)
	b = append(b, `,"suppressed":`...)
	b = strconv.AppendUint(b, e.Suppressed, 10)
	if d := e.Drop; d != nil {
		b = append(b, `,"drop":{"destination":`...)
		b = appendString(b, d.Destination)
		b = append(b, `,"protocol":`...)
		b = appendString(b, d.Protocol)
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(d.Port), 10)
		b = append(b, `,"reason":`...)
		b = appendString(b, d.Reason)
		b = append(b, `,"resolved_by":`...)
		b = appendString(b, d.ResolvedBy)
		b = append(b, `,"approved_ports":[`...)
		for i, p := range d.ApprovedPorts {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, p)
		}
		b = append(b, `],"answer_time":`...)
		b = appendString(b, d.AnswerTime)
		b = append(b, `,"expiry":`...)
		b = appendString(b, d.Expiry)
		b = append(b, '}')
	}
	return append(b, "}\n"...)
}

// appendDuration writes milliseconds with microsecond precision; NaN and
// infinities are not valid JSON numbers and become 0.
func appendDuration(b []byte, ms float64) []byte {
	if math.IsNaN(ms) || math.IsInf(ms, 0) {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, math.Round(ms*1000)/1000, 'f', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Query names come from the network
// and may hold any byte, so control characters are escaped and invalid
// UTF-8 becomes U+FFFD, exactly as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			b = append(b, `\u00`...)
			b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
