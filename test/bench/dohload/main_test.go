package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dohServer starts an in-process HTTP/2 DoH server on loopback whose answer
// to each query is made by answer.
func dohServer(t *testing.T, answer func(w http.ResponseWriter, q *dns.Msg)) options {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/dns-message" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		q := new(dns.Msg)
		if err := q.Unpack(body); err != nil {
			http.Error(w, "bad message", http.StatusBadRequest)
			return
		}
		answer(w, q)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return options{server: host, port: p, path: "/dns-query", conns: 2, inflight: 8, timeout: 5 * time.Second}
}

func writeMsg(w http.ResponseWriter, m *dns.Msg) {
	b, _ := m.Pack()
	w.Header().Set("Content-Type", "application/dns-message")
	_, _ = w.Write(b)
}

func TestRunCountsAnswersAndLosses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "q.txt")
	if err := os.WriteFile(file, []byte("h0.bench.test A\nh1.bench.test AAAA\nh2.bench.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, q *dns.Msg)
		want   []string // regexps over the report
	}{
		{
			name: "every query answered",
			answer: func(w http.ResponseWriter, q *dns.Msg) {
				r := new(dns.Msg)
				r.SetReply(q)
				writeMsg(w, r)
			},
			want: []string{`Queries sent: +300\n`, `Queries completed: +300 `, `Queries lost: +0 `,
				`Errors: +none`, `Response codes: +NOERROR 300 \(100\.00%\)`, `Latency p99 \(s\): +0\.\d+`},
		},
		{
			name: "rcodes counted",
			answer: func(w http.ResponseWriter, q *dns.Msg) {
				r := new(dns.Msg)
				r.SetRcode(q, dns.RcodeNameError)
				writeMsg(w, r)
			},
			want: []string{`Queries completed: +300 `, `Response codes: +NXDOMAIN 300 `},
		},
		{
			name: "HTTP error is lost",
			answer: func(w http.ResponseWriter, q *dns.Msg) {
				http.Error(w, "no", http.StatusServiceUnavailable)
			},
			want: []string{`Queries completed: +0 `, `Queries lost: +300 `, `Errors: +HTTP 503 300\n`},
		},
		{
			name: "answer to another question is lost",
			answer: func(w http.ResponseWriter, q *dns.Msg) {
				r := new(dns.Msg)
				r.SetReply(q)
				r.Question[0].Name = "other.test."
				writeMsg(w, r)
			},
			want: []string{`Queries lost: +300 `, `Errors: +wrong question 300\n`},
		},
		{
			name: "answer with another ID is lost",
			answer: func(w http.ResponseWriter, q *dns.Msg) {
				r := new(dns.Msg)
				r.SetReply(q)
				r.Id = 7
				writeMsg(w, r)
			},
			want: []string{`Queries lost: +300 `, `Errors: +bad answer 300\n`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := dohServer(t, tt.answer)
			o.file = file
			o.passes = 100
			var out bytes.Buffer
			if err := run(o, &out); err != nil {
				t.Fatal(err)
			}
			for _, re := range tt.want {
				if !regexp.MustCompile(re).Match(out.Bytes()) {
					t.Errorf("report does not match %q:\n%s", re, out.String())
				}
			}
		})
	}
}

func TestRunRefusesHTTP1(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler()) // HTTP/1.1 only
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	file := filepath.Join(t.TempDir(), "q.txt")
	if err := os.WriteFile(file, []byte("h0.bench.test A\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := options{server: host, port: p, path: "/dns-query", file: file, passes: 1, conns: 1, inflight: 1, timeout: 5 * time.Second}
	if err := run(o, io.Discard); err == nil {
		t.Fatal("run against an HTTP/1.1-only server: want an error, got none")
	}
}
