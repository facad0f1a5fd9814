// Package tlsfiles serves TLS from certificate files that may change: a server certificate and
// key, and optionally a client CA bundle for mutual TLS. Files are re-read when their content
// changes, so rotated certificates (cert-manager, Kubernetes secrets) apply without a restart;
// a broken update is reported and the last good material stays in use.
package tlsfiles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Files names the PEM files. ClientCA is optional; when set, clients must present a certificate
// it signed.
type Files struct {
	Cert, Key, ClientCA string
}

// Reloader holds the current TLS material and swaps it atomically on change.
type Reloader struct {
	files  Files
	log    *slog.Logger
	cur    atomic.Pointer[material]
	digest []byte // of the files' contents when last loaded; guarded by Run's single goroutine
}

type material struct {
	cert     *tls.Certificate
	clientCA *x509.CertPool
}

// New loads the files once; an error here is a start-up error.
func New(files Files, log *slog.Logger) (*Reloader, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tls: a certificate and a key are both required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{files: files, log: log}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files now and swaps them in if they are valid.
func (r *Reloader) Reload() error {
	m, digest, err := r.load()
	if err != nil {
		return err
	}
	r.cur.Store(m)
	r.digest = digest
	return nil
}

func (r *Reloader) load() (*material, []byte, error) {
	h := sha256.New()
	read := func(path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		h.Write(b)
		return b, nil
	}
	// On an error the digest of what was read is still returned, so that a broken update is
	// reported once, not at every poll.
	certPEM, err := read(r.files.Cert)
	if err != nil {
		return nil, h.Sum(nil), err
	}
	keyPEM, err := read(r.files.Key)
	if err != nil {
		return nil, h.Sum(nil), err
	}
	var caPEM []byte
	if r.files.ClientCA != "" {
		if caPEM, err = read(r.files.ClientCA); err != nil {
			return nil, h.Sum(nil), err
		}
	}
	digest := h.Sum(nil)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, digest, fmt.Errorf("tls: %s and %s: %w", r.files.Cert, r.files.Key, err)
	}
	m := &material{cert: &cert}
	if caPEM != nil {
		m.clientCA = x509.NewCertPool()
		if !m.clientCA.AppendCertsFromPEM(caPEM) {
			return nil, digest, fmt.Errorf("tls: %s holds no PEM certificate", r.files.ClientCA)
		}
	}
	return m, digest, nil
}

// Config returns a server tls.Config that always uses the current material.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := r.cur.Load()
			cfg := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*m.cert},
				NextProtos:   []string{"h2", "http/1.1"},
			}
			if m.clientCA != nil {
				cfg.ClientCAs = m.clientCA
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return cfg, nil
		},
	}
}

// Run re-reads the files every interval until ctx ends, swapping in changed, valid material.
func (r *Reloader) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m, digest, err := r.load()
			switch {
			case err != nil && !bytes.Equal(digest, r.digest):
				r.log.Error("tls: certificate files changed but cannot be used; keeping the current ones", "error", err.Error())
				r.digest = digest
			case err == nil && !bytes.Equal(digest, r.digest):
				r.cur.Store(m)
				r.digest = digest
				r.log.Info("tls: certificate files reloaded", "cert", r.files.Cert)
			}
		}
	}
}
