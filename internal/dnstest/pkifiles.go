package dnstest

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// PKIFiles are the PEM files of a PKI, for servers that read their
// certificate from files and for command-line clients.
type PKIFiles struct {
	Cert string // the server certificate
	Key  string // its private key (PKCS #8)
	CA   string // the CA certificate, for clients
}

// WriteFiles writes p's certificate, key and CA into dir.
func (p *PKI) WriteFiles(t testing.TB, dir string) PKIFiles {
	t.Helper()
	f := PKIFiles{
		Cert: filepath.Join(dir, "server.pem"),
		Key:  filepath.Join(dir, "server.key"),
		CA:   filepath.Join(dir, "ca.pem"),
	}
	der, err := x509.MarshalPKCS8PrivateKey(p.Cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, typ string, blocks ...[]byte) {
		var out []byte
		for _, b := range blocks {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})...)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(f.Cert, "CERTIFICATE", p.Cert.Certificate...)
	write(f.Key, "PRIVATE KEY", der)
	write(f.CA, "CERTIFICATE", p.CA.Raw)
	return f
}
