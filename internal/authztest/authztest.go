// Package authztest builds an authz.Authorizer on a dev issuer for the tests of the packages
// above the decision (the front ends, the end-to-end tests): the token verifier on the issuer's
// loaded key set, a clock the test moves, and the authorizer with the policy a test gives.
package authztest

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// Env is a dev issuer, a verifier whose clock is Now, and an authorizer on top.
type Env struct {
	*tokentest.Issuer
	Verifier   *token.Verifier
	Authorizer *authz.Authorizer
	// Now is the verifier's clock (T0 to start with).
	Now time.Time
	// ProofKey is a DPoP client key, and JKT its thumbprint (with Options.DPoP).
	ProofKey jwk.Key
	JKT      string
}

// Options shape an Env.
type Options struct {
	// Issuer, when set, changes the issuer's settings before the verifier is built.
	Issuer func(*token.Issuer)
	// Verifier, when set, changes the verifier's settings (cache sizes, leeway).
	Verifier func(*token.VerifierConfig)
	// Authorizer are the authorizer's options (Realm defaults to "api").
	Authorizer authz.Options
	// Policy, when set, is a policy file the authorizer enforces.
	Policy string
	// DPoP turns the DPoP scheme on, proofs checked on the Env's clock (a minute's leeway).
	DPoP bool
}

// New builds an Env.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	e := &Env{Issuer: tokentest.StartIssuer(t), Now: tokentest.T0}
	is := token.Issuer{URL: e.IDP.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: e.Keys}
	if o.Issuer != nil {
		o.Issuer(&is)
	}
	cfg := token.VerifierConfig{Issuers: []token.Issuer{is}, Leeway: 2 * time.Minute, Now: func() time.Time { return e.Now }}
	if o.Verifier != nil {
		o.Verifier(&cfg)
	}
	var err error
	e.Verifier, err = token.NewVerifier(cfg)
	require.NoError(t, err)
	if o.Policy != "" {
		o.Authorizer.Policy, err = policy.Load([]byte(o.Policy), []string{"default"})
		require.NoError(t, err)
	}
	if o.DPoP {
		o.Authorizer.DPoP, err = dpop.New(dpop.Options{Leeway: time.Minute, Now: func() time.Time { return e.Now }})
		require.NoError(t, err)
		e.ProofKey, err = devidp.NewProofKey()
		require.NoError(t, err)
		e.JKT, err = devidp.Thumbprint(e.ProofKey)
		require.NoError(t, err)
	}
	if o.Authorizer.Realm == "" {
		o.Authorizer.Realm = "api"
	}
	e.Authorizer = authz.NewAuthorizer(e.Verifier, o.Authorizer)
	return e
}

// Proof is a DPoP proof by ProofKey for a request, at the Env's time.
func (e *Env) Proof(t testing.TB, method, uri, accessToken string) string {
	t.Helper()
	p, err := devidp.Proof(e.ProofKey, method, uri, accessToken, e.Now)
	require.NoError(t, err)
	return p
}
