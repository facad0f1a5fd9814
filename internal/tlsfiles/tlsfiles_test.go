package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/tlsfiles/tlstest"
)

// serve accepts TLS connections with r's config and completes their handshakes.
func serve(t *testing.T, r *Reloader) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", r.Config())
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func clientConfig(t *testing.T, p *tlstest.PKI, withCert bool) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(p.CAFile)
	require.NoError(t, err)
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if withCert {
		c, err := tls.LoadX509KeyPair(p.ClientCertFile, p.ClientKeyFile)
		require.NoError(t, err)
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

// serverSerial dials addr and returns the serial of the certificate the server presented.
func serverSerial(t *testing.T, addr string, cfg *tls.Config) (int64, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	// With TLS 1.3 a rejected client certificate shows on the first read.
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil && !isEOF(err) {
		return 0, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func isEOF(err error) bool { return err.Error() == "EOF" }

func TestMutualTLS(t *testing.T) {
	p := tlstest.New(t)
	r, err := New(Files{Cert: p.CertFile, Key: p.KeyFile, ClientCA: p.CAFile}, nil)
	require.NoError(t, err)
	addr := serve(t, r)
	serial, err := serverSerial(t, addr, clientConfig(t, p, true))
	require.NoError(t, err)
	assert.Equal(t, int64(2), serial)
	_, err = serverSerial(t, addr, clientConfig(t, p, false))
	assert.Error(t, err, "a client without a certificate is refused")
}

func TestReloadOnChange(t *testing.T) {
	p := tlstest.New(t)
	r, err := New(Files{Cert: p.CertFile, Key: p.KeyFile}, nil)
	require.NoError(t, err)
	addr := serve(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, 10*time.Millisecond)

	// A broken update keeps the current certificate (checked directly: no waiting involved).
	require.NoError(t, os.WriteFile(p.CertFile, []byte("not a certificate"), 0o600))
	_, _, err = r.load()
	require.Error(t, err)
	serial, err := serverSerial(t, addr, clientConfig(t, p, false))
	require.NoError(t, err)
	assert.Equal(t, int64(2), serial)

	// A new certificate is picked up without a restart.
	cert, key := p.Issue(t, "server2", 7, x509.ExtKeyUsageServerAuth)
	certPEM, _ := os.ReadFile(cert)
	keyPEM, _ := os.ReadFile(key)
	require.NoError(t, os.WriteFile(p.KeyFile, keyPEM, 0o600))
	require.NoError(t, os.WriteFile(p.CertFile, certPEM, 0o600))
	require.Eventually(t, func() bool {
		s, err := serverSerial(t, addr, clientConfig(t, p, false))
		return err == nil && s == 7
	}, 5*time.Second, 10*time.Millisecond)
}

func TestNewRejectsBadFiles(t *testing.T) {
	p := tlstest.New(t)
	_, err := New(Files{Cert: p.CertFile}, nil)
	assert.ErrorContains(t, err, "both required")
	_, err = New(Files{Cert: p.CertFile, Key: p.ClientKeyFile}, nil)
	assert.Error(t, err, "a key that does not match the certificate")
	_, err = New(Files{Cert: p.CertFile, Key: p.KeyFile, ClientCA: p.KeyFile}, nil)
	assert.ErrorContains(t, err, "no PEM certificate")
}
