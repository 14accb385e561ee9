package blocklists

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// Entry is one usable line of a list, handed to the Parse callback.
type Entry struct {
	// Domain is normalized (lower case, punycode, no trailing dot). It is
	// only valid during the callback.
	Domain []byte
	Line   int
	// Wildcard entries ("*.name") cover the names below Domain, not Domain.
	Wildcard bool
	// Exception entries ("@@||name^", "rpz-passthru.") take matches away.
	Exception bool
}

// ParseResult summarizes one parsed source.
type ParseResult struct {
	Format      Format
	Lines       int
	Entries     int // blocking entries, duplicates included
	Exceptions  int
	Invalid     int // lines that are broken
	Unsupported int // well-formed rules egressd cannot apply (cosmetic, URL patterns, RPZ rewrites)
	// Problems lists the first maxProblems invalid lines, Skipped the first
	// maxProblems unsupported ones.
	Problems []Problem
	Skipped  []Problem
}

// maxProblems bounds what one source can make egressd remember about its
// bad lines; the counters keep counting past it.
const maxProblems = 100

// maxLineLen is the longest line considered; longer ones are reported.
const maxLineLen = 64 << 10

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Parse reads a list from r, calling emit for every usable entry. file
// names the source in problems; gzip-compressed input is unpacked on the
// fly. With FormatAuto the format is detected
// from the first lines. Bad lines never stop parsing; only a read error
// is returned.
func Parse(r io.Reader, file string, format Format, emit func(Entry)) (ParseResult, error) {
	br := bufio.NewReaderSize(r, maxLineLen)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		// Some projects publish their larger lists gzip-compressed.
		zr, err := gzip.NewReader(br)
		if err != nil {
			return ParseResult{}, fmt.Errorf("%s: %w", file, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, maxLineLen)
	}
	if format == FormatAuto {
		head, _ := br.Peek(maxLineLen) // a short read just means a short list
		format = detectFormat(head)
	}
	p := &parser{file: file, emit: emit}
	p.res.Format = format
	for {
		line, err := readLine(br)
		if line != nil || errors.Is(err, bufio.ErrBufferFull) {
			p.res.Lines++
			if errors.Is(err, bufio.ErrBufferFull) {
				p.invalid("line longer than %d bytes", maxLineLen)
			} else {
				if p.res.Lines == 1 {
					line = bytes.TrimPrefix(line, utf8BOM)
				}
				p.parseLine(format, line)
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return p.res, nil
		default:
			return p.res, fmt.Errorf("%s: read: %w", file, err)
		}
	}
}

// readLine returns the next line without its line ending. A line longer
// than the buffer is consumed and reported with bufio.ErrBufferFull. At
// the end it returns the last unterminated line (if any) with io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, bufio.ErrBufferFull
	}
	if err != nil && len(line) == 0 {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, err
}

type parser struct {
	file string
	emit func(Entry)
	res  ParseResult

	fields [][]byte // reused by line splitting

	// RPZ zone state.
	origin   []byte
	inParens bool
}

func (p *parser) parseLine(format Format, raw []byte) {
	line := bytes.TrimSpace(raw)
	if len(line) == 0 {
		return
	}
	switch format {
	case FormatAdblock:
		p.adblockLine(line)
	case FormatRPZ:
		p.rpzLine(line, raw[0] == ' ' || raw[0] == '\t')
	default:
		p.hostsLine(line, false)
	}
}

func (p *parser) note(to *[]Problem, format string, args ...any) {
	if len(*to) < maxProblems {
		*to = append(*to, Problem{File: p.file, Line: p.res.Lines, Msg: fmt.Sprintf(format, args...)})
	}
}

func (p *parser) invalid(format string, args ...any) {
	p.res.Invalid++
	p.note(&p.res.Problems, format, args...)
}

func (p *parser) unsupported(format string, args ...any) {
	p.res.Unsupported++
	p.note(&p.res.Skipped, "unsupported "+format, args...)
}

// addName normalizes one name and emits it. A leading "*." makes a
// wildcard entry; a leading "." (dnsmasq style) means the same as the bare
// name, which already covers its subdomains by default. It returns the
// reason when the name is unusable, so callers decide how to count it.
func (p *parser) addName(name []byte, exception bool) string {
	wildcard := false
	switch {
	case bytes.HasPrefix(name, []byte("*.")):
		wildcard, name = true, name[2:]
	case len(name) > 1 && name[0] == '.':
		name = name[1:]
	}
	d, reason := normalizeDomain(name)
	if reason != "" {
		return reason
	}
	if reason := suffixReason(d); reason != "" {
		return reason
	}
	if exception {
		p.res.Exceptions++
	} else {
		p.res.Entries++
	}
	p.emit(Entry{Domain: d, Line: p.res.Lines, Wildcard: wildcard, Exception: exception})
	return ""
}

// isComment reports lines that are comments in every supported format.
func isComment(line []byte) bool {
	return line[0] == '#' || line[0] == '!' || line[0] == ';'
}
