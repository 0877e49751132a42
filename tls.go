package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// validateTLS checks --tls-cert and --tls-key: both or neither, files that
// can be read, a certificate and the private key that matches it.
func (c *Config) validateTLS() error {
	if c.TLSCert == "" && c.TLSKey == "" {
		return nil
	}
	if c.TLSKey == "" {
		return badSetting("tls-key", envName("tls-key"), "", "the PEM private key of --tls-cert: give both or neither")
	}
	if c.TLSCert == "" {
		return badSetting("tls-cert", envName("tls-cert"), "", "the PEM certificate of --tls-key: give both or neither")
	}
	_, err := loadKeyPair(c.TLSCert, c.TLSKey)
	return err
}

// loadKeyPair reads a certificate chain and its private key, with errors
// that name the setting at fault.
func loadKeyPair(certPath, keyPath string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, badSetting("tls-cert", envName("tls-cert"), certPath, "a readable PEM certificate file: "+pathError(err))
	}
	if !hasCertificate(certPEM) {
		return nil, badSetting("tls-cert", envName("tls-cert"), certPath, "a PEM file of CERTIFICATE blocks, the server's first (such as certbot's fullchain.pem)")
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, badSetting("tls-key", envName("tls-key"), keyPath, "a readable PEM private key file: "+pathError(err))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, badSetting("tls-key", envName("tls-key"), keyPath, "the PEM private key of the certificate in --tls-cert ("+err.Error()+")")
	}
	return &cert, nil
}

// hasCertificate reports whether b holds a PEM certificate that parses.
func hasCertificate(b []byte) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if block.Type == "CERTIFICATE" {
			_, err := x509.ParseCertificate(block.Bytes)
			return err == nil
		}
	}
}

// pathError is an os error without the path, which the message already has.
func pathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// certFiles serves the certificate of --tls-cert and --tls-key, and reads
// them again when either file changes, so that a renewed certificate
// (certbot renews every 60 days, in place) is served without a restart.
// The files are looked at on a handshake at most once every interval; a
// pair that fails to load is logged and the previous one kept.
type certFiles struct {
	certPath, keyPath string
	interval          time.Duration
	logger            *slog.Logger

	// mu guards the fields below.
	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // modification times of the files loaded
	checked time.Time
}

// newCertFiles loads the pair once; it must load.
func newCertFiles(certPath, keyPath string, logger *slog.Logger) (*certFiles, error) {
	c := &certFiles{certPath: certPath, keyPath: keyPath, interval: 10 * time.Second, logger: logger}
	stamp, _ := c.stamps()
	cert, err := loadKeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	c.cert, c.stamp, c.checked = cert, stamp, time.Now()
	return c, nil
}

func (c *certFiles) stamps() ([2]time.Time, error) {
	var st [2]time.Time
	for i, p := range []string{c.certPath, c.keyPath} {
		fi, err := os.Stat(p)
		if err != nil {
			return st, err
		}
		st[i] = fi.ModTime()
	}
	return st, nil
}

// get is tls.Config.GetCertificate.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= c.interval {
		c.checked = now
		c.reloadLocked()
	}
	return c.cert, nil
}

func (c *certFiles) reloadLocked() {
	stamp, err := c.stamps()
	if err != nil || stamp == c.stamp {
		return
	}
	cert, err := loadKeyPair(c.certPath, c.keyPath)
	if err != nil {
		// A renewal caught between writing the two files loads on the
		// next look; until then the previous pair serves.
		c.logger.Warn("TLS certificate not reloaded; serving the previous one", "err", err)
		return
	}
	c.cert, c.stamp = cert, stamp
	c.logger.Info("TLS certificate reloaded", "file", c.certPath, "not_after", leafNotAfter(cert))
}

// leafNotAfter is when the server's certificate expires.
func leafNotAfter(cert *tls.Certificate) time.Time {
	if cert.Leaf != nil {
		return cert.Leaf.NotAfter
	}
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		return leaf.NotAfter
	}
	return time.Time{}
}

// protocols is what the listener speaks. Over TLS, HTTP/2 is negotiated
// (ALPN) and HTTP/1.1 stays for clients without it. In plain text HTTP/2
// comes by prior knowledge (h2c), for proxies that speak it to their
// upstream and for curl --http2-prior-knowledge; an HTTP/1.1 connection is
// served as before, and a stream on one still leaves net/http for the
// hub (stream.Hub.Serve).
func protocols(tlsOn bool) *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	if tlsOn {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	return p
}

// tlsConfig serves certs, TLS 1.2 and later.
func tlsConfig(certs *certFiles) *tls.Config {
	return &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12}
}
