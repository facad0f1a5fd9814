package grpcapi

import (
	"testing"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/internal/authztest"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/token"
)

// env is authztest's: a dev issuer, a verifier, an authorizer (az) on top.
type env struct {
	*authztest.Env
	az *authz.Authorizer
}

func newEnv(t testing.TB, o *authztest.Options) *env {
	t.Helper()
	if o == nil {
		o = &authztest.Options{}
	}
	e := authztest.New(t, *o)
	return &env{Env: e, az: e.Authorizer}
}

func (e *env) mint(t testing.TB, extra map[string]any) string { t.Helper(); return e.Mint(t, extra) }

var t0 = tokentest.T0

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// uncached turns the verified-token cache off.
func uncached(c *token.VerifierConfig) { c.CacheSize = -1 }
