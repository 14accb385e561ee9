package blocklists

import "fmt"

// Problem is one line of a list that could not be used. Problems are
// reported, never fatal: the rest of the list still loads.
type Problem struct {
	File string
	Line int // 0 when the problem is about the whole file
	Msg  string
}

func (p Problem) String() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}
