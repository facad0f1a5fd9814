package token

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/jwks"
)

// t0 is the fixed time tokens are minted and checked at; foreignKey an attacker's key.
var (
	t0         = tokentest.T0
	foreignKey = tokentest.ForeignKey
	sign       = tokentest.Sign
	signRaw    = tokentest.SignRaw
	compact    = tokentest.Compact
	publicPEM  = tokentest.PublicPEM
)

// env is a dev issuer, its key set loaded, and a verifier on top whose clock is now.
type env struct {
	idp  *devidp.Server
	keys *jwks.Set
	v    *Verifier
	now  time.Time
}

func newEnv(t testing.TB, mod func(*Issuer)) *env {
	t.Helper()
	iss := tokentest.StartIssuer(t)
	e := &env{idp: iss.IDP, keys: iss.Keys, now: t0}
	is := Issuer{URL: e.idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: e.keys}
	if mod != nil {
		mod(&is)
	}
	var err error
	e.v, err = NewVerifier(VerifierConfig{Issuers: []Issuer{is}, Leeway: 2 * time.Minute, Now: func() time.Time { return e.now }})
	require.NoError(t, err)
	return e
}

// mint returns a token from the dev issuer with extra claims merged in.
func (e *env) mint(t testing.TB, extra map[string]any) string {
	t.Helper()
	tok, err := e.idp.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}, Extra: extra})
	require.NoError(t, err)
	return tok
}
