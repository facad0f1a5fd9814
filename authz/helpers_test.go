package authz

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/jwks"
)

// t0 is the fixed time tokens are minted and checked at.
var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// foreignKey is an attacker's key, generated once per package.
var foreignKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

// env is a dev issuer, a key set loaded from it, and a verifier and authorizer on top.
type env struct {
	idp  *devidp.Server
	keys *jwks.Set
	v    *Verifier
	az   *Authorizer
	now  time.Time
}

func newEnv(t testing.TB, mod func(*Issuer)) *env {
	t.Helper()
	e := &env{now: t0}
	idp, _ := devidptest.Start(t, devidp.Config{Now: func() time.Time { return t0 }})
	keys, err := jwks.New(jwks.Options{Issuer: idp.Issuer(), Algs: []string{"RS256"}, AllowHTTP: true})
	require.NoError(t, err)
	require.NoError(t, keys.Refresh(context.Background()))
	is := Issuer{URL: idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: keys}
	if mod != nil {
		mod(&is)
	}
	e.v, err = NewVerifier(VerifierConfig{Issuers: []Issuer{is}, Leeway: 2 * time.Minute, Now: func() time.Time { return e.now }})
	require.NoError(t, err)
	e.idp, e.keys = idp, keys
	e.az = NewAuthorizer(e.v, Options{Realm: "api"})
	return e
}

// mint returns a token from the dev issuer with extra claims merged in.
func (e *env) mint(t testing.TB, extra map[string]any) string {
	t.Helper()
	tok, err := e.idp.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}, Extra: extra})
	require.NoError(t, err)
	return tok
}

// sign signs claims with any key and algorithm and the given extra protected headers.
func sign(t testing.TB, key any, alg jwa.SignatureAlgorithm, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	h := jws.NewHeaders()
	for k, v := range hdr {
		require.NoError(t, h.Set(k, v))
	}
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	require.NoError(t, err)
	return string(tok)
}

// compact assembles a token from raw parts without signing (for alg none and malformed input).
func compact(t testing.TB, hdr, claims map[string]any, sig string) string {
	t.Helper()
	h, err := json.Marshal(hdr)
	require.NoError(t, err)
	c, err := json.Marshal(claims)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." + sig
}

// publicPEM is the issuer's public key as PEM bytes: the "secret" an HS256 confusion attack uses.
func publicPEM(t testing.TB, k *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// signRaw signs a payload given as raw JSON (to express what a map cannot: repeated names,
// escapes, member order) with the given extra protected headers.
func signRaw(t testing.TB, key any, alg jwa.SignatureAlgorithm, hdr map[string]any, payload string) string {
	t.Helper()
	h := jws.NewHeaders()
	for k, v := range hdr {
		require.NoError(t, h.Set(k, v))
	}
	tok, err := jws.Sign([]byte(payload), jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	require.NoError(t, err)
	return string(tok)
}
