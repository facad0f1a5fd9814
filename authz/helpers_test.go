package authz

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

var (
	t0              = tokentest.T0
	foreignKey      = tokentest.ForeignKey
	sign            = tokentest.Sign
	signRaw         = tokentest.SignRaw
	devTokenRequest = tokentest.TokenRequest
)

// env is a dev issuer, a key set loaded from it, and a verifier and authorizer on top.
type env struct {
	idp  *devidp.Server
	keys *jwks.Set
	v    *token.Verifier
	az   *Authorizer
	now  time.Time
}

func newEnv(t testing.TB, mod func(*token.Issuer)) *env {
	t.Helper()
	iss := tokentest.StartIssuer(t)
	e := &env{idp: iss.IDP, keys: iss.Keys, now: t0}
	is := token.Issuer{URL: e.idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: e.keys}
	if mod != nil {
		mod(&is)
	}
	var err error
	e.v, err = token.NewVerifier(token.VerifierConfig{Issuers: []token.Issuer{is}, Leeway: 2 * time.Minute, Now: func() time.Time { return e.now }})
	require.NoError(t, err)
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

// loadPolicy loads a policy file for the default issuer, failing the test on an error.
func loadPolicy(t testing.TB, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Load([]byte(text), []string{"default"})
	require.NoError(t, err)
	return p
}

// The policies of policy/testdata: samplePolicy has every kind of match and requirement,
// pathsPolicy a public prefix next to protected paths (the shape of path confusion attacks).
var samplePolicy, pathsPolicy = readPolicy("sample.yaml"), readPolicy("paths.yaml")

func readPolicy(name string) string {
	b, err := os.ReadFile(filepath.Join("..", "policy", "testdata", name))
	if err != nil {
		panic(err)
	}
	return string(b)
}
