// Command dohload is the DNS over HTTPS load generator of test/bench/compare.
// It opens -c HTTP/2 connections, keeps -q queries in flight spread over
// them (one stream each), sends the queries of a dnsperf-style file
// ("name TYPE" a line) in a loop for -l seconds or -n passes, and prints a
// summary in dnsperf's format (the lines compare reads) plus the latency
// percentiles:
//
//	dohload -s 127.0.0.1 -p 5421 -d queries.txt -l 10 -c 10 -q 200
//
// Every connection is opened before the clock starts and reused for the
// whole run. Each answer is read in full as soon as it arrives, so what it
// measures is the server. A query counts as completed when an HTTP 200
// answer holding a DNS response arrives within -t seconds; anything else
// (timeout, transport error, other HTTP status, a body that is not a DNS
// response) counts as lost and is broken down on the "Errors:" line.
// Queries still in flight at the end of the run are waited for (up to -t),
// not counted as lost.
//
// The server's certificate is verified against -cacert when given; without
// it, it is not verified (the benchmark's own self-signed certificate).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

type options struct {
	server   string
	port     int
	path     string
	file     string
	duration time.Duration
	passes   int
	conns    int
	inflight int
	timeout  time.Duration
	get      bool
	cacert   string
}

func main() {
	var o options
	var limit, timeout float64
	flag.StringVar(&o.server, "s", "127.0.0.1", "server address")
	flag.IntVar(&o.port, "p", 443, "server port")
	flag.StringVar(&o.path, "path", "/dns-query", "DoH path")
	flag.StringVar(&o.file, "d", "", "query file, \"name TYPE\" a line")
	flag.Float64Var(&limit, "l", 0, "run for this many seconds (0: until -n passes)")
	flag.IntVar(&o.passes, "n", 0, "passes through the query file (0: until -l)")
	flag.IntVar(&o.conns, "c", 10, "HTTP/2 connections")
	flag.IntVar(&o.inflight, "q", 200, "queries in flight in all, spread over the connections")
	flag.Float64Var(&timeout, "t", 5, "seconds before a query is lost")
	flag.BoolVar(&o.get, "get", false, "GET with ?dns= instead of POST")
	procs := flag.Int("T", 0, "threads (GOMAXPROCS; 0: the Go default)")
	flag.StringVar(&o.cacert, "cacert", "", "PEM file to verify the server's certificate (default: not verified)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "dohload:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	o.duration = time.Duration(limit * float64(time.Second))
	o.timeout = time.Duration(timeout * float64(time.Second))
	if err := run(o, os.Stdout); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "dohload:", err)
		os.Exit(1)
	}
}

// readQueries packs each "name TYPE" line of file as a DNS query with ID 0
// (RFC 8484 section 4.1) and recursion desired.
func readQueries(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		qtype := dns.TypeA
		if len(fields) > 1 {
			t, ok := dns.StringToType[strings.ToUpper(fields[1])]
			if !ok {
				return nil, fmt.Errorf("%s:%d: unknown type %q", file, line, fields[1])
			}
			qtype = t
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(fields[0]), qtype)
		m.Id = 0
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", file, line, err)
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", file)
	}
	return out, nil
}

func tlsConfig(o options) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: o.server, MinVersion: tls.VersionTLS12}
	if o.cacert == "" {
		cfg.InsecureSkipVerify = true // the benchmark's own self-signed certificate
		return cfg, nil
	}
	pem, err := os.ReadFile(o.cacert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", o.cacert)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// dial opens one HTTP/2 connection (never HTTP/1.1: the transport offers
// only h2, so a server without it fails here).
func dial(o options, cfg *tls.Config) (*http.ClientConn, error) {
	addr := net.JoinHostPort(o.server, strconv.Itoa(o.port))
	var protos http.Protocols
	protos.SetHTTP2(true)
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		Protocols:           &protos,
		TLSHandshakeTimeout: o.timeout,
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	return tr.NewClientConn(ctx, "https", addr)
}

// stats is one worker's tally; merged at the end.
type stats struct {
	sent, completed int64
	reqBytes        int64
	respBytes       int64
	rcodes          map[int]int64
	errs            map[string]int64
	latencies       []time.Duration
}

func newStats() *stats {
	return &stats{rcodes: map[int]int64{}, errs: map[string]int64{}}
}

func (s *stats) merge(t *stats) {
	s.sent += t.sent
	s.completed += t.completed
	s.reqBytes += t.reqBytes
	s.respBytes += t.respBytes
	for k, v := range t.rcodes {
		s.rcodes[k] += v
	}
	for k, v := range t.errs {
		s.errs[k] += v
	}
	s.latencies = append(s.latencies, t.latencies...)
}

func run(o options, w io.Writer) error {
	if o.file == "" {
		return errors.New("-d query file is required")
	}
	if o.duration <= 0 && o.passes <= 0 {
		return errors.New("one of -l or -n is required")
	}
	if o.conns < 1 || o.inflight < o.conns {
		return errors.New("-c must be at least 1 and -q at least -c")
	}
	queries, err := readQueries(o.file)
	if err != nil {
		return err
	}
	cfg, err := tlsConfig(o)
	if err != nil {
		return err
	}
	ccs := make([]*http.ClientConn, o.conns)
	for i := range ccs {
		if ccs[i], err = dial(o, cfg); err != nil {
			return err
		}
		defer ccs[i].Close()
	}
	url := "https://" + net.JoinHostPort(o.server, strconv.Itoa(o.port)) + o.path

	// next hands out query indexes; a negative result means stop.
	var counter atomic.Int64
	total := int64(-1)
	if o.passes > 0 {
		total = int64(o.passes) * int64(len(queries))
	}
	var stop atomic.Bool
	next := func() int64 {
		if stop.Load() {
			return -1
		}
		n := counter.Add(1) - 1
		if total >= 0 && n >= total {
			return -1
		}
		return n
	}

	workers := make([]*stats, o.inflight)
	var wg sync.WaitGroup
	start := time.Now()
	if o.duration > 0 {
		timer := time.AfterFunc(o.duration, func() { stop.Store(true) })
		defer timer.Stop()
	}
	for i := range workers {
		st := newStats()
		workers[i] = st
		cc := ccs[i%len(ccs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next()
				if n < 0 {
					return
				}
				q := queries[n%int64(len(queries))]
				st.sent++
				st.reqBytes += int64(len(q))
				t0 := time.Now()
				rcode, size, err := query(cc, url, q, o)
				if err != nil {
					st.errs[err.Error()]++
					continue
				}
				st.latencies = append(st.latencies, time.Since(t0))
				st.completed++
				st.respBytes += int64(size)
				st.rcodes[rcode]++
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	all := newStats()
	for _, st := range workers {
		all.merge(st)
	}
	report(w, all, elapsed)
	return nil
}

// query sends one query on cc and returns the answer's rcode and size. Its
// errors are short, fixed strings, so they can be counted by kind.
func query(cc *http.ClientConn, url string, q []byte, o options) (int, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var req *http.Request
	var err error
	if o.get {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, url+"?dns="+base64.RawURLEncoding.EncodeToString(q), nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(q))
		if err == nil {
			req.Header.Set("Content-Type", "application/dns-message")
		}
	}
	if err != nil {
		return 0, 0, errors.New("request")
	}
	req.Header.Set("Accept", "application/dns-message")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, 0, errors.New("timeout")
		}
		return 0, 0, errors.New("transport")
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 65536))
	resp.Body.Close()
	switch {
	case err != nil && ctx.Err() != nil:
		return 0, 0, errors.New("timeout")
	case err != nil:
		return 0, 0, errors.New("transport")
	case resp.ProtoMajor != 2:
		return 0, 0, errors.New("not HTTP/2")
	case resp.StatusCode != http.StatusOK:
		return 0, 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	case len(body) < 12 || body[2]&0x80 == 0 || body[0] != 0 || body[1] != 0:
		// Not a DNS response to an ID 0 query.
		return 0, 0, errors.New("bad answer")
	case !bytes.Equal(questionOf(body), questionOf(q)):
		return 0, 0, errors.New("wrong question")
	}
	return int(body[3] & 0x0f), len(body), nil
}

// questionOf returns the first question's wire bytes of msg (name, type and
// class), lower-cased, or nil when msg has none.
func questionOf(msg []byte) []byte {
	if len(msg) < 12 || msg[4] != 0 || msg[5] != 1 {
		return nil
	}
	i := 12
	for i < len(msg) && msg[i] != 0 {
		if msg[i]&0xc0 != 0 {
			return nil // a pointer cannot be the first name of a message
		}
		i += int(msg[i]) + 1
	}
	if i+5 > len(msg) {
		return nil
	}
	return bytes.ToLower(msg[12 : i+5])
}

// report prints dnsperf's summary lines (what compare reads) and the
// latency percentiles.
func report(w io.Writer, s *stats, elapsed time.Duration) {
	pct := func(n int64) float64 {
		if s.sent == 0 {
			return 0
		}
		return 100 * float64(n) / float64(s.sent)
	}
	lost := s.sent - s.completed
	fmt.Fprintf(w, "Statistics:\n\n")
	fmt.Fprintf(w, "  Queries sent:         %d\n", s.sent)
	fmt.Fprintf(w, "  Queries completed:    %d (%.2f%%)\n", s.completed, pct(s.completed))
	fmt.Fprintf(w, "  Queries lost:         %d (%.2f%%)\n", lost, pct(lost))
	fmt.Fprintf(w, "  Errors:               %s\n\n", errorLine(s.errs))

	codes := make([]int, 0, len(s.rcodes))
	for c := range s.rcodes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%s %d (%.2f%%)", dns.RcodeToString[c], s.rcodes[c],
			100*float64(s.rcodes[c])/float64(s.completed)))
	}
	fmt.Fprintf(w, "  Response codes:       %s\n", strings.Join(parts, ", "))
	var avgReq, avgResp int64
	if s.sent > 0 {
		avgReq = s.reqBytes / s.sent
	}
	if s.completed > 0 {
		avgResp = s.respBytes / s.completed
	}
	fmt.Fprintf(w, "  Average packet size:  request %d, response %d\n", avgReq, avgResp)
	fmt.Fprintf(w, "  Run time (s):         %.6f\n", elapsed.Seconds())
	fmt.Fprintf(w, "  Queries per second:   %.6f\n\n", float64(s.completed)/elapsed.Seconds())

	lat := s.latencies
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	at := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p*float64(len(lat))+0.999999) - 1
		return lat[max(0, min(i, len(lat)-1))].Seconds()
	}
	var mean, lo, hi float64
	if len(lat) > 0 {
		mean = sum.Seconds() / float64(len(lat))
		lo, hi = lat[0].Seconds(), lat[len(lat)-1].Seconds()
	}
	fmt.Fprintf(w, "  Average Latency (s):  %.6f (min %.6f, max %.6f)\n", mean, lo, hi)
	fmt.Fprintf(w, "  Latency p50 (s):      %.6f\n", at(0.50))
	fmt.Fprintf(w, "  Latency p99 (s):      %.6f\n", at(0.99))
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		// Near the run time, the load generator, not the server, was the limit.
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fmt.Fprintf(w, "  Load generator CPU (s): %.3f\n", cpu.Seconds())
	}
}

func errorLine(errs map[string]int64) string {
	if len(errs) == 0 {
		return "none"
	}
	kinds := make([]string, 0, len(errs))
	for k := range errs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, errs[k])
	}
	return strings.Join(parts, ", ")
}
