package handlers

import (
	"crypto/tls"
	"os"
	"sync"
	"time"
)

// TLSConfig serves the certificate of certFile and keyFile, read again when they change:
// cert-manager and the like renew them in place.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.get(nil); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get}, nil
}

// certReloader serves a certificate from its files, read again when they change.
type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	modified          time.Time
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.certFile)
	if err == nil && r.cert != nil && !fi.ModTime().After(r.modified) {
		return r.cert, nil
	}
	cert, lerr := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	switch {
	case lerr != nil && r.cert != nil:
		return r.cert, nil // halfway through a renewal: the old one until both files are new
	case lerr != nil:
		return nil, lerr
	}
	r.cert = &cert
	if err == nil {
		r.modified = fi.ModTime()
	}
	return r.cert, nil
}
