package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// scraper reads egressd's /metrics from inside the gateway namespace.
type scraper struct {
	url    string
	client *http.Client
}

func newScraper(ns netnstest.Namespace, addr netip.AddrPort) *scraper {
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, address)
			return err
		})
		return c, err
	}
	return &scraper{
		url:    "http://" + addr.String() + "/metrics",
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}},
	}
}

// scrape fetches and parses one exposition.
func (s *scraper) scrape() (samples, error) {
	resp, err := s.client.Get(s.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	return parseSamples(resp.Body)
}

// samples maps a series as written in the exposition, e.g.
// `egressd_config_reloads_total{result="ok"}`, to its value.
type samples map[string]float64

// parseSamples reads the Prometheus text format, ignoring comments and
// timestamps.
func parseSamples(r io.Reader) (samples, error) {
	out := samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The series ends at the first space after the closing brace (label
		// values may contain spaces).
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			end = strings.IndexByte(line, ' ')
		} else {
			end++
		}
		if end <= 0 || end >= len(line) {
			return nil, fmt.Errorf("malformed sample line %q", line)
		}
		fields := strings.Fields(line[end:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("value in %q: %w", line, err)
		}
		out[line[:end]] = v
	}
	return out, sc.Err()
}

// get returns a series' value and whether it was present.
func (s samples) get(series string) (float64, bool) {
	v, ok := s[series]
	return v, ok
}
