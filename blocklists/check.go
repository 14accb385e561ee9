package blocklists

import (
	"fmt"
)

// CheckSources validates specs and parses every file source, for
// `egressd check`. Invalid lines come back as problems (at most
// maxProblems per file); rules that are well-formed but unsupported, such
// as cosmetic AdBlock filters, are not problems. URL sources are checked
// for syntax only: check never touches the network; a plain http:// one
// is a problem, since anyone on the path can rewrite it. The error is for
// specs that cannot be used at all.
func CheckSources(specs []CategorySpec, baseDir string) ([]Problem, error) {
	resolved, err := resolveSpecs(specs, baseDir)
	if err != nil {
		return nil, err
	}
	var problems []Problem
	for _, r := range resolved {
		for _, src := range r.sources {
			if isPlainHTTP(src) {
				problems = append(problems, Problem{File: sourceLabel(src), Msg: fmt.Sprintf("category %q: %s", r.name, plainHTTPWarning)})
			}
			if isURL(src) {
				continue
			}
			res, err := checkFile(src, r.format)
			if err != nil {
				problems = append(problems, Problem{File: src, Msg: fmt.Sprintf("category %q: %v", r.name, err)})
				continue
			}
			problems = append(problems, res.Problems...)
			if n := res.Invalid - len(res.Problems); n > 0 {
				problems = append(problems, Problem{File: src, Msg: fmt.Sprintf("%d more invalid lines not shown", n)})
			}
		}
	}
	return problems, nil
}

func checkFile(path string, format Format) (ParseResult, error) {
	f, err := openSource(path)
	if err != nil {
		return ParseResult{}, err
	}
	defer f.Close()
	return Parse(f, path, format, func(Entry) {})
}
