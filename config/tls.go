package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net/url"
	"strings"
)

// encrypted checks the DNS-over-TLS and DNS-over-HTTPS keys of [server]
// and loads the certificate when a listener needs it, so a missing file or
// a key that does not belong to the certificate stops the start (and the
// reload) with the line that names it.
func (v *validator) encrypted(s *Server) {
	for _, l := range s.TLSListen {
		v.addrPort("server.tls_listen", l)
	}
	for _, l := range s.HTTPSListen {
		v.addrPort("server.https_listen", l)
	}
	if u, err := url.Parse(s.HTTPSPath); err != nil || !strings.HasPrefix(s.HTTPSPath, "/") || u.Path != s.HTTPSPath || u.RawQuery != "" {
		v.err("server.https_path", "server.https_path: invalid path %q (want an absolute path without a query, e.g. \"/dns-query\")", s.HTTPSPath)
	}
	s.TrustedProxyPrefixes = v.prefixes("server.trusted_proxies", s.TrustedProxies)
	if len(s.TLSListen) == 0 && len(s.HTTPSListen) == 0 {
		return
	}
	if s.TLSCert == "" || s.TLSKey == "" {
		key, missing := "server.tls_listen", "server.tls_cert and server.tls_key"
		if len(s.TLSListen) == 0 {
			key = "server.https_listen"
		}
		switch {
		case s.TLSCert != "":
			key, missing = "server.tls_cert", "server.tls_key"
		case s.TLSKey != "":
			key, missing = "server.tls_key", "server.tls_cert"
		}
		v.err(key, "%s: a TLS or HTTPS listener needs %s (PEM files)", key, missing)
		return
	}
	cert, err := LoadCertificate(s.TLSCert, s.TLSKey)
	if err != nil {
		key := "server.tls_key"
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == s.TLSCert {
			key = "server.tls_cert"
		}
		v.err(key, "%s: %v", key, err)
		return
	}
	s.Certificate = cert
}

// LoadCertificate reads a PEM certificate chain and its private key and
// checks that they belong together.
func LoadCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, err
		}
		return nil, errors.New("cannot use " + certFile + " with " + keyFile + ": " + err.Error())
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}
