package config

import (
	"strconv"
	"strings"
)

// positions records the line of every key in a TOML file so validation
// errors can say FILE:LINE. BurntSushi/toml does not expose key positions,
// and egressd configs use a small, regular subset of TOML (tables, arrays
// of tables, key = value), so a line scanner is enough.
type positions struct {
	lines []string
	keys  map[string]int // "server.listen", "group.0.allow", "categories.malware.sources"
}

func scanPositions(text string) *positions {
	p := &positions{lines: strings.Split(text, "\n"), keys: map[string]int{}}
	table := ""
	arrayCount := map[string]int{}
	for i, raw := range p.lines {
		line := strings.TrimSpace(stripComment(raw))
		if line == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line, "[["):
			name := normalizeKey(strings.Trim(line, "[] "))
			idx := arrayCount[name]
			arrayCount[name]++
			table = name + "." + strconv.Itoa(idx)
			p.set(table, i+1)
		case strings.HasPrefix(line, "["):
			table = normalizeKey(strings.Trim(line, "[] "))
			p.set(table, i+1)
		default:
			eq := strings.IndexByte(line, '=')
			if eq <= 0 {
				continue // continuation of a multi-line array
			}
			key := normalizeKey(line[:eq])
			if table != "" {
				key = table + "." + key
			}
			p.set(key, i+1)
		}
	}
	return p
}

func (p *positions) set(key string, line int) {
	if _, ok := p.keys[key]; !ok {
		p.keys[key] = line
	}
}

// line returns the line of key, falling back to its enclosing tables.
func (p *positions) line(key string) int {
	for key != "" {
		if l, ok := p.keys[key]; ok {
			return l
		}
		dot := strings.LastIndexByte(key, '.')
		if dot < 0 {
			break
		}
		key = key[:dot]
	}
	return 0
}

// valueLine finds the line holding the string literal value within the
// (possibly multi-line) array that starts at key.
func (p *positions) valueLine(key, value string) int {
	start := p.line(key)
	if start == 0 {
		return 0
	}
	quoted := strconv.Quote(value)
	for i := start - 1; i < len(p.lines) && i < start-1+10000; i++ {
		l := stripComment(p.lines[i])
		if strings.Contains(l, quoted) || strings.Contains(l, "'"+value+"'") {
			return i + 1
		}
		if i > start-1 && strings.Contains(l, "]") && !strings.Contains(l, "[") {
			break
		}
	}
	return start
}

// firstKeyIn finds the first line of key name within any instance of an
// array table or table prefix ("group" matches "group.3.bad").
func (p *positions) firstKeyIn(prefix []string, name string) int {
	best := 0
	pfx := strings.Join(prefix, ".")
	for k, l := range p.keys {
		if !strings.HasSuffix(k, "."+name) && k != name {
			continue
		}
		head := ""
		if k != name {
			head = strings.TrimSuffix(k, "."+name)
		}
		if head == pfx || stripIndexes(head) == pfx {
			if best == 0 || l < best {
				best = l
			}
		}
	}
	return best
}

func stripIndexes(k string) string {
	parts := strings.Split(k, ".")
	out := parts[:0]
	for _, s := range parts {
		if _, err := strconv.Atoi(s); err == nil {
			continue
		}
		out = append(out, s)
	}
	return strings.Join(out, ".")
}

func normalizeKey(k string) string {
	parts := strings.Split(k, ".")
	for i, s := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(s), `"'`)
	}
	return strings.Join(parts, ".")
}

// stripComment removes a # comment that is not inside a string.
func stripComment(s string) string {
	inStr := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr != 0:
			if c == '\\' && inStr == '"' {
				i++
			} else if c == inStr {
				inStr = 0
			}
		case c == '"' || c == '\'':
			inStr = c
		case c == '#':
			return s[:i]
		}
	}
	return s
}
