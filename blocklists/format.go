package blocklists

import (
	"bytes"
	"fmt"
)

// Format is the syntax of one list source.
type Format uint8

const (
	FormatAuto    Format = iota // detect from the first lines
	FormatDomains               // one name per line
	FormatHosts                 // "0.0.0.0 name [name...]"
	FormatAdblock               // "||name^", "@@||name^"
	FormatRPZ                   // "name CNAME ." zone file
)

var formatNames = [...]string{"auto", "domains", "hosts", "adblock", "rpz"}

func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return "unknown"
}

// ParseFormat maps a config word ("" means auto) to a Format.
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return FormatAuto, nil
	}
	for i, n := range formatNames {
		if n == s {
			return Format(i), nil
		}
	}
	return 0, fmt.Errorf("unknown list format %q (want auto, domains, hosts, adblock or rpz)", s)
}

// detectLines is how many meaningful lines detection looks at.
const detectLines = 200

// detectFormat guesses the format of a list from its first bytes. Each
// non-comment line votes; the strongest non-plain signal wins so that a
// hosts file with a few bare names is still read as hosts.
func detectFormat(head []byte) Format {
	var votes [len(formatNames)]int
	seen := 0
	for len(head) > 0 && seen < detectLines {
		var line []byte
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			line, head = head, nil
		}
		line = bytes.TrimSpace(bytes.TrimPrefix(line, utf8BOM))
		if len(line) == 0 {
			continue
		}
		if line[0] == '[' && bytes.HasPrefix(bytes.ToLower(line), []byte("[adblock")) {
			return FormatAdblock
		}
		if line[0] == '$' {
			votes[FormatRPZ] += 5
			continue
		}
		if line[0] == '#' || line[0] == '!' || line[0] == ';' {
			continue
		}
		seen++
		votes[classifyLine(line)]++
	}
	best, bestVotes := FormatDomains, 0
	for _, f := range []Format{FormatHosts, FormatAdblock, FormatRPZ} {
		if votes[f] > bestVotes {
			best, bestVotes = f, votes[f]
		}
	}
	// A structured format wins unless plain names outnumber it four to one:
	// hosts files often carry a few bare names, and those parsers accept them.
	if bestVotes == 0 || bestVotes*4 < votes[FormatDomains] {
		return FormatDomains
	}
	return best
}

func classifyLine(line []byte) Format {
	if bytes.HasPrefix(line, []byte("||")) || bytes.HasPrefix(line, []byte("@@")) {
		return FormatAdblock
	}
	fields := bytes.Fields(line)
	if len(fields) >= 2 {
		if isAddr(fields[0]) {
			return FormatHosts
		}
		for _, f := range fields[1:min(len(fields), 4)] {
			if isRRType(f) {
				return FormatRPZ
			}
		}
	}
	return FormatDomains
}

func isRRType(f []byte) bool {
	for _, t := range [...]string{"cname", "soa", "ns", "a", "aaaa", "txt"} {
		if len(f) == len(t) && bytes.EqualFold(f, []byte(t)) {
			return true
		}
	}
	return false
}
