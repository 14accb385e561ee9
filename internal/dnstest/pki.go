package dnstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"
)

// ServerName is the name in the test certificate, beside 127.0.0.1 and
// ::1.
const ServerName = "dns.test"

// PKI is a throw-away CA and a server certificate it signed.
type PKI struct {
	Roots *x509.CertPool // holds the CA, for clients
	CA    *x509.Certificate
	Cert  tls.Certificate
}

// NewPKI makes a CA and a server certificate for ServerName, 127.0.0.1
// and ::1, valid for an hour either side of now.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	return NewPKIFor(t)
}

// NewPKIFor is NewPKI with the addresses ips in the certificate too, for
// clients that verify a server by the address they dial.
func NewPKIFor(t testing.TB, ips ...netip.Addr) *PKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "egressd test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: ServerName},
		DNSNames:     []string{ServerName},
		IPAddresses:  ipList(ips),
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &PKI{Roots: roots, CA: ca, Cert: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}
}

func ipList(extra []netip.Addr) []net.IP {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, a := range extra {
		ips = append(ips, a.AsSlice())
	}
	return ips
}

// ServerConfig is a TLS server configuration with the certificate.
func (p *PKI) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Cert}, MinVersion: tls.VersionTLS12}
}
