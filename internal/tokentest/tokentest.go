// Package tokentest mints access tokens for tests of the packages that verify and judge them: a
// dev issuer on loopback whose key set is loaded, a fixed clock, an attacker's key, and ways to
// sign whatever a test needs (odd headers, raw payloads, no signature at all). It imports
// nothing of the service above jwks, so every package's tests can use it.
package tokentest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/jwks"
)

// T0 is the fixed time tokens are minted and checked at.
var T0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// ForeignKey is an attacker's key, generated once per test binary.
var ForeignKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

// Issuer is a dev issuer at T0 and its key set, loaded.
type Issuer struct {
	IDP  *devidp.Server
	Keys *jwks.Set
}

// StartIssuer starts a dev issuer whose clock is T0 and loads its key set.
func StartIssuer(t testing.TB) *Issuer {
	t.Helper()
	idp, _ := devidptest.Start(t, devidp.Config{Now: func() time.Time { return T0 }})
	keys, err := jwks.New(jwks.Options{Issuer: idp.Issuer(), Algs: []string{"RS256"}, AllowHTTP: true})
	require.NoError(t, err)
	require.NoError(t, keys.Refresh(context.Background()))
	return &Issuer{IDP: idp, Keys: keys}
}

// Mint returns a token from the dev issuer for client test-client with messages:read, extra
// claims merged in.
func (is *Issuer) Mint(t testing.TB, extra map[string]any) string {
	t.Helper()
	tok, err := is.IDP.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}, Extra: extra})
	require.NoError(t, err)
	return tok
}

// TokenRequest is the request Mint makes, for tests that change its claims by hand.
func TokenRequest() devidp.TokenRequest {
	return devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}}
}

// Sign signs claims with any key and algorithm and the given extra protected headers.
func Sign(t testing.TB, key any, alg jwa.SignatureAlgorithm, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	return SignRaw(t, key, alg, hdr, string(payload))
}

// SignRaw signs a payload given as raw JSON (to express what a map cannot: repeated names,
// escapes, member order) with the given extra protected headers.
func SignRaw(t testing.TB, key any, alg jwa.SignatureAlgorithm, hdr map[string]any, payload string) string {
	t.Helper()
	h := jws.NewHeaders()
	for k, v := range hdr {
		require.NoError(t, h.Set(k, v))
	}
	tok, err := jws.Sign([]byte(payload), jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	require.NoError(t, err)
	return string(tok)
}

// Compact assembles a token from raw parts without signing (for alg none and malformed input).
func Compact(t testing.TB, hdr, claims map[string]any, sig string) string {
	t.Helper()
	h, err := json.Marshal(hdr)
	require.NoError(t, err)
	c, err := json.Marshal(claims)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." + sig
}

// PublicPEM is a public key as PEM bytes: the "secret" an HS256 confusion attack uses.
func PublicPEM(t testing.TB, k *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ClientCert returns a self-signed client certificate as Envoy passes it (URL-encoded PEM) and
// its x5t#S256 thumbprint, for certificate-bound tokens (RFC 8705).
func ClientCert(t testing.TB) (passed, thumbprint string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: T0.Add(-time.Hour), NotAfter: T0.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	sum := sha256.Sum256(der)
	var escaped strings.Builder // as Envoy's PercentEncoding::urlEncode: every reserved byte
	for _, c := range pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			escaped.WriteByte(c)
		} else {
			fmt.Fprintf(&escaped, "%%%02X", c)
		}
	}
	return escaped.String(), base64.RawURLEncoding.EncodeToString(sum[:])
}
