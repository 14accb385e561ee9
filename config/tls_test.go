package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/dnstest"
)

// The encrypted DNS keys: a listener needs a certificate and key that
// load and belong together, and every mistake names its file and line.
func TestEncryptedDNSKeys(t *testing.T) {
	dir := t.TempDir()
	good := dnstest.NewPKI(t).WriteFiles(t, filepath.Join(mkdir(t, dir, "good")))
	other := dnstest.NewPKI(t).WriteFiles(t, filepath.Join(mkdir(t, dir, "other")))
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	tests := []struct {
		name    string
		server  string // lines after [server] listen = ...
		wantErr string // "" for a valid config; else "LINE: text"
	}{
		{"none", "", ""},
		{"dot and doh", "tls_listen = [\"127.0.0.1:853\"]\nhttps_listen = [\"127.0.0.1:443\"]\ntls_cert = " + q(good.Cert) + "\ntls_key = " + q(good.Key) + "\ntrusted_proxies = [\"10.9.0.0/16\"]", ""},
		{"cert without listener", "tls_cert = " + q(good.Cert) + "\ntls_key = " + q(good.Key), ""},
		{"cert alone, no listener", "tls_cert = " + q(missing), ""},
		{"listener without cert", "tls_listen = [\"127.0.0.1:853\"]", ":4: server.tls_listen: a TLS or HTTPS listener needs server.tls_cert and server.tls_key"},
		{"https without cert", "https_listen = [\"127.0.0.1:443\"]", ":4: server.https_listen: a TLS or HTTPS listener needs"},
		{"cert without key", "tls_listen = [\"127.0.0.1:853\"]\ntls_cert = " + q(good.Cert), ":5: server.tls_cert: a TLS or HTTPS listener needs server.tls_key"},
		{"missing cert file", "tls_listen = [\"127.0.0.1:853\"]\ntls_cert = " + q(missing) + "\ntls_key = " + q(good.Key), ":5: server.tls_cert: open " + missing},
		{"missing key file", "tls_listen = [\"127.0.0.1:853\"]\ntls_cert = " + q(good.Cert) + "\ntls_key = " + q(missing), ":6: server.tls_key: open " + missing},
		{"mismatched key", "https_listen = [\"127.0.0.1:443\"]\ntls_cert = " + q(good.Cert) + "\ntls_key = " + q(other.Key), ":6: server.tls_key: cannot use " + good.Cert + " with " + other.Key + ": tls: private key does not match public key"},
		{"not PEM", "tls_listen = [\"127.0.0.1:853\"]\ntls_cert = " + q(garbage) + "\ntls_key = " + q(good.Key), ":6: server.tls_key: cannot use " + garbage},
		{"bad listen address", "tls_listen = [\"localhost:853\"]\ntls_cert = " + q(good.Cert) + "\ntls_key = " + q(good.Key), ":4: server.tls_listen: invalid address \"localhost:853\""},
		{"bad path", "https_path = \"dns-query\"", ":4: server.https_path: invalid path \"dns-query\""},
		{"path with query", "https_path = \"/dns?x=1\"", ":4: server.https_path: invalid path"},
		{"bad proxy", "trusted_proxies = [\"10.0.0.0/33\"]", ":4: server.trusted_proxies: invalid CIDR \"10.0.0.0/33\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := "\n[server]\nlisten = [\"127.0.0.1:5353\"]\n" + tc.server + "\n"
			cfg, err := Parse("enc.toml", []byte(text))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				s := cfg.Server
				if s.HTTPSPath != "/dns-query" {
					t.Errorf("https_path default %q, want /dns-query", s.HTTPSPath)
				}
				if (len(s.TLSListen)+len(s.HTTPSListen) > 0) != (s.Certificate != nil) {
					t.Errorf("certificate loaded: %v, with %d listeners", s.Certificate != nil, len(s.TLSListen)+len(s.HTTPSListen))
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted it, want error %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), "enc.toml"+tc.wantErr) {
				t.Errorf("error %q\nwant it to contain %q", err, "enc.toml"+tc.wantErr)
			}
		})
	}
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}
