package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dt "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstaptest"
	"github.com/egressd/egressd/internal/wait"
)

// requireDnstapRead returns the path of BIND's dnstap-read, skipping the
// test without it unless EGRESSD_REQUIRE_NETNS=1 (./test/run as root,
// which installs it), where its absence fails the test.
func requireDnstapRead(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("dnstap-read")
	if err == nil {
		return path
	}
	msg := "dnstap-read not in PATH (Debian package bind9-dnsutils)"
	if os.Getenv("EGRESSD_REQUIRE_NETNS") == "1" {
		t.Fatalf("%s, although EGRESSD_REQUIRE_NETNS=1", msg)
	}
	t.Skip(msg)
	return ""
}

// tapRecord is one message as dnstap-read -y prints it.
type tapRecord struct {
	identity, version string
	typ, protocol     string
	question          string // the question line, e.g. "www.allowed.test. IN A"
	responder         string // response_address:response_port: egressd, or the upstream
	id                string // the DNS message's ID
}

var (
	yamlField = regexp.MustCompile(`(?m)^(identity|version): (.*)$`)
	msgField  = regexp.MustCompile(`(?m)^  (type|socket_protocol|response_address|response_port): "?([^"\s]+)"?$`)
	msgID     = regexp.MustCompile(`(?m)^    id: (\d+)$`)
	question  = regexp.MustCompile(`(?m)^\s+;([^;\s]\S*)\s+IN\s+(\S+)\s*$`)
)

// readTap runs dnstap-read -y on path and returns its messages.
func readTap(t *testing.T, bin, path string) []tapRecord {
	t.Helper()
	out, err := exec.Command(bin, "-y", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap-read -y %s: %v\n%s", path, err, out)
	}
	var recs []tapRecord
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(strings.Trim(doc, "-")) == "" {
			continue
		}
		var r tapRecord
		for _, m := range yamlField.FindAllStringSubmatch(doc, -1) {
			if m[1] == "identity" {
				r.identity = m[2]
			} else {
				r.version = m[2]
			}
		}
		var addr, port string
		for _, m := range msgField.FindAllStringSubmatch(doc, -1) {
			switch m[1] {
			case "type":
				r.typ = m[2]
			case "socket_protocol":
				r.protocol = m[2]
			case "response_address":
				addr = m[2]
			case "response_port":
				port = m[2]
			}
		}
		r.responder = net.JoinHostPort(addr, port)
		if m := msgID.FindStringSubmatch(doc); m != nil {
			r.id = m[1]
		}
		if m := question.FindStringSubmatch(doc); m != nil {
			r.question = m[1] + " " + m[2]
		}
		recs = append(recs, r)
	}
	return recs
}

// TestServeDnstapFile runs the real binary with a dnstap file output and
// reads it back with BIND's dnstap-read: each client query and response,
// over UDP and TCP, and the forwarder's query and reply for the cache
// miss, with the configured identity.
func TestServeDnstapFile(t *testing.T) {
	reader := requireDnstapRead(t)
	dir := t.TempDir()
	upstream := startUpstream(t)
	listen, metricsAddr := freePort(t), freePort(t)
	tapFile := filepath.Join(dir, "egressd.dnstap")
	conf := writeFile(t, dir, "egressd.toml", serveConfig(upstream, listen, metricsAddr, "none", "")+
		fmt.Sprintf("\n[dnstap]\noutput = %q\nidentity = \"gw-test\"\n", "file://"+tapFile))
	d := startDaemon(t, conf, listen, metricsAddr)

	d.query(t, "www.allowed.test") // miss: goes upstream
	d.query(t, "www.allowed.test") // hit
	d.query(t, "denied.test")      // denied: NXDOMAIN, no upstream
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	if _, _, err := c.Exchange(new(dns.Msg).SetQuestion("tcp.allowed.test.", dns.TypeAAAA), listen); err != nil {
		t.Fatalf("TCP query: %v", err)
	}
	if !wait.Until(5*time.Second, 20*time.Millisecond, func() bool {
		return d.metric(t, `egressd_dnstap_frames_total{result="sent"}`)
	}) {
		t.Error("metrics lack egressd_dnstap_frames_total")
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}

	recs := readTap(t, reader, tapFile)
	var got []string
	forwarded := map[string]string{} // FORWARDER_QUERY's ID by question
	for _, r := range recs {
		want := listen
		if strings.HasPrefix(r.typ, "FORWARDER_") {
			want = upstream
		}
		if r.responder != want {
			t.Errorf("%s %s: response address %s, want %s", r.typ, r.question, r.responder, want)
		}
		if r.id == "" {
			t.Errorf("%s %s: no message ID in dnstap-read's output", r.typ, r.question)
		}
		switch r.typ {
		case "FORWARDER_QUERY":
			forwarded[r.question] = r.id
		case "FORWARDER_RESPONSE":
			if forwarded[r.question] != r.id {
				t.Errorf("%s: forwarder query ID %s, response ID %s; want the ID sent", r.question, forwarded[r.question], r.id)
			}
		}
		if r.identity != "gw-test" || !strings.HasPrefix(r.version, "egressd ") {
			t.Errorf("identity %q version %q, want gw-test and egressd VERSION", r.identity, r.version)
		}
		if r.question == "probe.invalid. A" || r.question == ". NS" {
			continue // readiness probes (startDaemon's, egressd's upstream probe), however many
		}
		got = append(got, r.typ+" "+r.protocol+" "+r.question)
	}
	want := []string{
		"CLIENT_QUERY UDP www.allowed.test. A",
		"FORWARDER_QUERY UDP www.allowed.test. A",
		"FORWARDER_RESPONSE UDP www.allowed.test. A",
		"CLIENT_RESPONSE UDP www.allowed.test. A",
		"CLIENT_QUERY UDP www.allowed.test. A",
		"CLIENT_RESPONSE UDP www.allowed.test. A",
		"CLIENT_QUERY UDP denied.test. A",
		"CLIENT_RESPONSE UDP denied.test. A",
		"CLIENT_QUERY TCP tcp.allowed.test. AAAA",
		"FORWARDER_QUERY UDP tcp.allowed.test. AAAA",
		"FORWARDER_RESPONSE UDP tcp.allowed.test. AAAA",
		"CLIENT_RESPONSE TCP tcp.allowed.test. AAAA",
	}
	// A worker taps its response just after writing it, so the client's
	// next query may be tapped first: compare without order.
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("dnstap-read shows\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestServeDnstapSocket runs the binary with a unix socket output: a
// Frame Streams reader gets the messages live; one that accepts and never
// reads costs answers nothing, and the messages that do not fit the queue
// are counted as dropped.
func TestServeDnstapSocket(t *testing.T) {
	tests := []struct {
		name  string
		reads bool
		queue int
	}{
		// The queue holds every message: none is dropped while egressd
		// connects or the reader falls behind.
		{"reader", true, 1000},
		{"reader that never reads", false, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "tap.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			names := make(chan string, 1000)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					defer c.Close()
					if !tt.reads {
						continue // held open, never read: not even the handshake
					}
					go readFrames(c, names)
				}
			}()
			upstream := startUpstream(t)
			listen, metricsAddr := freePort(t), freePort(t)
			conf := writeFile(t, dir, "egressd.toml", serveConfig(upstream, listen, metricsAddr, "none", "")+
				fmt.Sprintf("\n[dnstap]\noutput = %q\nqueue = %d\nforwarder = false\n", "unix://"+sock, tt.queue))
			d := startDaemon(t, conf, listen, metricsAddr)
			const queries = 100
			for i := range queries {
				d.query(t, fmt.Sprintf("n%d.allowed.test", i)) // fails the test if unanswered
			}
			if tt.reads {
				seen := map[string]bool{}
				for len(seen) < queries {
					select {
					case n := <-names:
						seen[n] = true
					case <-time.After(10 * time.Second):
						t.Fatalf("dnstap reader got %d of %d names", len(seen), queries)
					}
				}
				return
			}
			// The writer never gets past the handshake, so it takes no
			// message: of the 2 per query at most queue wait, the rest
			// are dropped.
			if got := metricValue(t, d, `egressd_dnstap_frames_total{result="dropped"}`); got < float64(2*queries-tt.queue) {
				t.Errorf("dropped %v dnstap messages, want at least %d", got, 2*queries-tt.queue)
			}
		})
	}
}

// readFrames reads a Frame Streams connection and sends the question
// name of every CLIENT_RESPONSE.
func readFrames(c net.Conn, names chan<- string) {
	dnstaptest.ReadFrames(c, func(m *dt.Dnstap) {
		if m.GetMessage().GetType() != dt.Message_CLIENT_RESPONSE {
			return
		}
		var resp dns.Msg
		if resp.Unpack(m.GetMessage().GetResponseMessage()) == nil && len(resp.Question) == 1 {
			if n, ok := strings.CutSuffix(resp.Question[0].Name, ".allowed.test."); ok {
				names <- n
			}
		}
	})
}

// metricValue is the value of the /metrics sample named series.
func metricValue(t *testing.T, d *daemonProc, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}
