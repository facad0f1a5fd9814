package devidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// DefaultAddr is the dev issuer's conventional listener, as in the compose stack.
const DefaultAddr = "localhost:9400"

// IssuerFor is the issuer URL of a dev issuer listening on addr, as clients on this machine
// reach it: http://localhost:PORT/oauth2/default for a loopback or unspecified host (so that
// devidp and authz --dev name the same issuer), http://HOST:PORT/oauth2/default otherwise.
func IssuerFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/oauth2/default"
	}
	if ip := net.ParseIP(host); host == "" || host == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified())) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/oauth2/default"
}

// LoadSigningKey reads an RSA private key (PEM, PKCS #8) from path, or creates one there
// (mode 0600) when the file does not exist. For development issuers only: the key is as safe
// as the file.
func LoadSigningKey(path string) (key *rsa.PrivateKey, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, false, fmt.Errorf("devidp: generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("devidp: write signing key: %w", err)
		}
		return key, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("devidp: read signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, false, fmt.Errorf("devidp: signing key %s is not PEM", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("devidp: signing key %s: %w", path, err)
	}
	rk, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("devidp: signing key %s is not an RSA key (the dev issuer signs RS256)", path)
	}
	return rk, false, nil
}

// keyID names a loaded key by its RFC 7638 thumbprint, so that it keeps its kid across restarts.
func keyID(key *rsa.PrivateKey) (string, error) {
	pub, err := jwk.Import(&key.PublicKey)
	if err != nil {
		return "", err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("dev-%x", tp[:6]), nil
}
