package blocklists

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MaxCategories is how many categories fit in a Match bit set.
const MaxCategories = 64

// CategorySpec is one configured category.
type CategorySpec struct {
	Name string
	// Sources are file paths (relative ones resolve against
	// Options.BaseDir) or http(s) URLs.
	Sources []string
	// Refresh is how often Start reloads the sources; 0 means only at
	// Load and Refresh.
	Refresh time.Duration
	// Match is MatchSubdomains (default when empty) or MatchExact.
	Match string
	// Format forces a list format for every source ("" detects it per
	// source): auto, domains, hosts, adblock or rpz.
	Format string
}

// resolvedSpec is a validated spec with absolute source locations.
type resolvedSpec struct {
	name    string
	sources []string
	refresh time.Duration
	exact   bool
	format  Format
}

// resolveSpecs validates specs and returns them sorted by name, which is
// also their bit order.
func resolveSpecs(specs []CategorySpec, baseDir string) ([]resolvedSpec, error) {
	if len(specs) > MaxCategories {
		return nil, fmt.Errorf("%d categories configured; at most %d are supported", len(specs), MaxCategories)
	}
	var errs []error
	seen := map[string]bool{}
	out := make([]resolvedSpec, 0, len(specs))
	for _, s := range specs {
		if s.Name == "" {
			errs = append(errs, errors.New("category with an empty name"))
			continue
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("category %q configured twice", s.Name))
			continue
		}
		seen[s.Name] = true
		r := resolvedSpec{name: s.Name, refresh: s.Refresh}
		switch s.Match {
		case "", MatchSubdomains:
		case MatchExact:
			r.exact = true
		default:
			errs = append(errs, fmt.Errorf("category %q: match %q is not %q or %q", s.Name, s.Match, MatchSubdomains, MatchExact))
		}
		f, err := ParseFormat(s.Format)
		if err != nil {
			errs = append(errs, fmt.Errorf("category %q: %w", s.Name, err))
		}
		r.format = f
		if s.Refresh < 0 {
			errs = append(errs, fmt.Errorf("category %q: negative refresh interval", s.Name))
		}
		if len(s.Sources) == 0 {
			errs = append(errs, fmt.Errorf("category %q has no sources", s.Name))
		}
		if len(s.Sources) > refSrcMax+1 {
			errs = append(errs, fmt.Errorf("category %q has %d sources; at most %d are supported", s.Name, len(s.Sources), refSrcMax+1))
		}
		for _, src := range s.Sources {
			loc, err := resolveSource(src, baseDir)
			if err != nil {
				errs = append(errs, fmt.Errorf("category %q: %w", s.Name, err))
				continue
			}
			r.sources = append(r.sources, loc)
		}
		out = append(out, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(out, func(a, b resolvedSpec) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func resolveSource(src, baseDir string) (string, error) {
	switch {
	case src == "":
		return "", errors.New("empty source")
	case isURL(src):
		u, err := url.Parse(src)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("source %q is not a valid URL", src)
		}
		return src, nil
	case isBuiltin(src):
		return src, checkBuiltin(src)
	case strings.Contains(src, "://"):
		return "", fmt.Errorf("source %q: only http and https URLs are supported", src)
	case filepath.IsAbs(src) || baseDir == "":
		return filepath.Clean(src), nil
	default:
		return filepath.Join(baseDir, src), nil
	}
}
