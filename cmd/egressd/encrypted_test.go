package main

import (
	"crypto/tls"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/internal/dnstest"
)

// encryptedConfig is serveConfig with DNS over TLS and HTTPS.
func encryptedConfig(upstream, listen, dot, doh, metricsAddr string, files dnstest.PKIFiles) string {
	extra := `tls_listen = ["` + dot + `"]
https_listen = ["` + doh + `"]
tls_cert = "` + files.Cert + `"
tls_key = "` + files.Key + `"`
	return serveConfig(upstream, listen, metricsAddr, "none", extra)
}

// dotQuery asks name over an open DNS-over-TLS connection.
func dotQuery(t *testing.T, c *dns.Conn, name string) *dns.Msg {
	t.Helper()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	if err := c.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	r, err := c.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func dialDoT(t *testing.T, addr string, pki *dnstest.PKI) (*dns.Conn, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: pki.Roots, ServerName: dnstest.ServerName, NextProtos: []string{"dot"}})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &dns.Conn{Conn: c}, nil
}

// SIGHUP reads the certificate and key again: new handshakes get the new
// pair, an open connection keeps working, and a key that does not match
// keeps the running pair.
func TestServeEncryptedCertificateReload(t *testing.T) {
	dir := t.TempDir()
	upstream := startUpstream(t)
	listen, dot, doh, metricsAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	first := dnstest.NewPKI(t)
	files := first.WriteFiles(t, dir)
	conf := writeFile(t, dir, "egressd.toml", encryptedConfig(upstream, listen, dot, doh, metricsAddr, files))
	d := startDaemon(t, conf, listen, metricsAddr)

	open, err := dialDoT(t, dot, first)
	if err != nil {
		t.Fatal(err)
	}
	if r := dotQuery(t, open, "www.allowed.test"); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("over DoT: %v", r)
	}

	second := dnstest.NewPKI(t)
	second.WriteFiles(t, dir) // renewed in place
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "config reloaded")
	if _, err := dialDoT(t, dot, first); err == nil {
		t.Error("a new handshake still uses the old certificate after SIGHUP")
	}
	if c, err := dialDoT(t, dot, second); err != nil {
		t.Errorf("handshake with the renewed certificate: %v", err)
	} else if r := dotQuery(t, c, "www.allowed.test"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("over a new connection: %v", r)
	}
	if r := dotQuery(t, open, "www.allowed.test"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("the connection opened before SIGHUP: %v", r)
	}

	// A key of another certificate: the reload fails, the pair in use stays.
	other := dnstest.NewPKI(t).WriteFiles(t, t.TempDir())
	data, err := os.ReadFile(other.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.Key, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "config reload failed")
	if !strings.Contains(d.stderr.String(), "server.tls_key: cannot use") {
		t.Errorf("the failed reload does not say why:\n%s", d.stderr.String())
	}
	if _, err := dialDoT(t, dot, second); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
	if !d.metric(t, `egressd_queries_by_transport_total{transport="tls"} 3`) {
		t.Error(`egressd_queries_by_transport_total{transport="tls"} is not 3`)
	}
}

// A listener without a usable certificate stops the start with the file
// and line that name it.
func TestServeEncryptedStartupErrors(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := dnstest.NewPKI(t).WriteFiles(t, dir)
	other := dnstest.NewPKI(t).WriteFiles(t, t.TempDir())
	tests := []struct {
		name  string
		files dnstest.PKIFiles
		want  string
	}{
		{"missing key", dnstest.PKIFiles{Cert: good.Cert, Key: filepath.Join(dir, "absent.key")}, "egressd.toml:7: server.tls_key: open " + filepath.Join(dir, "absent.key")},
		{"mismatched key", dnstest.PKIFiles{Cert: good.Cert, Key: other.Key}, "egressd.toml:7: server.tls_key: cannot use " + good.Cert + " with " + other.Key},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf := writeFile(t, t.TempDir(), "egressd.toml", encryptedConfig("127.0.0.1:53", freePort(t), freePort(t), freePort(t), freePort(t), tc.files))
			cmd := exec.Command(bin, "serve", "-config", conf)
			out, err := cmd.CombinedOutput() // exits at once
			if err == nil {
				t.Fatal("egressd started")
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q\nwant it to contain %q", out, tc.want)
			}
		})
	}
}

// The firewall accepts DNS over TLS and HTTPS to egressd's own addresses,
// the ones bound at start.
func TestFirewallSpecEncryptedDNS(t *testing.T) {
	dir := t.TempDir()
	files := dnstest.NewPKI(t).WriteFiles(t, dir)
	plain := "[server]\nlisten = [\"10.0.0.53:53\"]\n"
	enc := plain + "tls_listen = [\"10.0.0.53:853\", \"[fd00::53]:853\"]\nhttps_listen = [\"10.0.0.53:443\"]\ntls_cert = \"" + files.Cert + "\"\ntls_key = \"" + files.Key + "\"\n"
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"plain only", plain, nil},
		{"encrypted", enc, []string{"10.0.0.53:853", "[fd00::53]:853", "10.0.0.53:443"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse("t.toml", []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			spec := firewallSpec(cfg, cfg)
			var got []string
			for _, ap := range spec.EncryptedDNS {
				got = append(got, ap.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("EncryptedDNS %v, want %v", got, tc.want)
			}
			if want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.53:53")}; !slices.Equal(spec.DNS, want) {
				t.Errorf("DNS %v, want %v", spec.DNS, want)
			}
		})
	}
}
