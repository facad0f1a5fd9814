package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/grpcapi"
	"github.com/platformauth/envoy-okta-authz/httpapi"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
	"github.com/platformauth/envoy-okta-authz/token/introspect"
)

// introspectionTTL is the cached judges' introspection cache TTL: the revocation window.
const introspectionTTL = time.Minute

// TestIntrospectionCacheChangesNoDecision is TestCacheChangesNoDecision for introspection
// (mode always, JWTs and opaque tokens from one dev issuer): the judges ask the issuer on
// every request, cache its answers at the default sizes, or cache them in caches of two so
// that answers are evicted all the time. The routes' demands and identities change under
// reloads, so a cached answer reused under a rule that wants other scopes (Oathkeeper's
// CVE-2021-32701) would show as a difference. A revocation is followed by a clock step past
// the cache TTL — within it, the cached judges allowing a revoked token is the documented
// revocation window, not a difference.
func TestIntrospectionCacheChangesNoDecision(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { runIntrospectionDifferential(t, seed, 500) })
	}
}

func runIntrospectionDifferential(t *testing.T, seed uint64, steps int) {
	var nowNanos atomic.Int64 // the issuer's handlers read the clock on their own goroutines
	nowNanos.Store(tokentest.T0.UnixNano())
	clock := func() time.Time { return time.Unix(0, nowNanos.Load()).UTC() }
	advance := func(d time.Duration) { nowNanos.Add(int64(d)) }
	idp, _ := devidptest.Start(t, devidp.Config{Now: clock, Clients: map[string]devidp.Client{
		"app": {Secret: "app-secret", Scopes: []string{"messages:read", "messages:write"}},
		"rs":  {Secret: "rs-secret"},
	}})
	keys, err := jwks.New(jwks.Options{Issuer: idp.Issuer(), Algs: []string{"RS256"}, AllowHTTP: true})
	require.NoError(t, err)
	require.NoError(t, keys.Refresh(context.Background()))

	var judges []frontEnds
	for _, c := range []struct {
		name string
		// tokenCache and answers size the verifier's token caches and the introspection
		// client's caches (0: the default; a negative tokenCache: none).
		tokenCache, answers int
		cached              bool
	}{
		{name: "uncached", tokenCache: -1},
		{name: "cached", cached: true},
		{name: "tiny caches", tokenCache: 2, answers: 2, cached: true},
	} {
		cfg := introspect.Config{Endpoint: idp.Issuer() + "/v1/introspect", Auth: introspect.ClientSecretBasic,
			ClientID: "rs", Secret: "rs-secret", CacheTTL: introspectionTTL, CacheSize: c.answers, NegativeSize: c.answers, Now: clock}
		if !c.cached {
			cfg.CacheTTL, cfg.NegativeTTL = -1, -1
		}
		client, err := introspect.New(cfg)
		require.NoError(t, err)
		is := token.Issuer{URL: idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: keys,
			Introspection: &token.Introspection{Mode: token.IntrospectAlways, Client: client}}
		v, err := token.NewVerifier(token.VerifierConfig{Issuers: []token.Issuer{is}, Leeway: 2 * time.Minute, Now: clock,
			CacheSize: c.tokenCache, NegativeCacheSize: max(c.tokenCache, 0)})
		require.NoError(t, err)
		az := authz.NewAuthorizer(v, authz.Options{Realm: "api"})
		judges = append(judges, frontEnds{c.name, az, grpcapi.New(az), httpapi.New(az, httpapi.Options{Source: httpapi.SourceNginx})})
	}
	policies := make([]*policy.Policy, len(differentialPolicies))
	for i, src := range differentialPolicies {
		p, err := policy.Load([]byte(src), []string{"default"})
		require.NoError(t, err)
		policies[i] = p
	}

	rng := rand.New(rand.NewPCG(seed, 7662))
	var tokens []string
	mint := func() {
		req := devidp.TokenRequest{ClientID: "app",
			Scopes:  [][]string{{"messages:read"}, {"messages:read", "messages:write"}, {"messages:write"}, nil}[rng.IntN(4)],
			Subject: fmt.Sprintf("u%d", rng.IntN(9)),
			Extra: map[string]any{
				"exp":    clock().Add(time.Duration(1+rng.IntN(30)) * time.Minute).Unix(),
				"email":  fmt.Sprintf("user%d@example.com", rng.IntN(5)),
				"groups": []string{"g1", "g2"}[:rng.IntN(3)],
			}}
		mintOne := idp.Mint
		if rng.IntN(2) == 0 {
			mintOne = idp.MintOpaque
		}
		tok, err := mintOne(req)
		require.NoError(t, err)
		if rng.IntN(12) == 0 {
			tok = tok[:len(tok)-6] + "AAAAAA" // forged, or an opaque token the issuer never made
		}
		tokens = append(tokens, tok)
	}
	for range 10 {
		mint()
	}
	paths := []string{"/api/messages", "/lean", "/passthrough", "/other"}
	revoked, seen := 0, map[string]int{}
	for step := range steps {
		switch n := rng.IntN(100); {
		case n < 10:
			// Steps shorter than the cache TTL: tokens expire while their answers are cached.
			advance(time.Duration(rng.IntN(90)) * time.Second)
		case n < 13:
			idp.Revoke(tokens[rng.IntN(len(tokens))])
			revoked++
			advance(introspectionTTL + time.Second)
		case n < 18:
			p := policies[rng.IntN(len(policies))]
			for _, j := range judges {
				j.az.SetPolicy(p)
			}
		case n < 25:
			mint()
		default:
			path := paths[rng.IntN(len(paths))]
			seen[compareJudges(t, judges, fmt.Sprintf("step %d, %s", step, path), tokens[rng.IntN(len(tokens))], path, rng.IntN(6) == 0)]++
		}
	}
	require.Positive(t, revoked)
	// The sequence reached the answers that matter here.
	for _, want := range []string{"allow ", "invalid_token token_inactive", "insufficient_scope insufficient_scope"} {
		require.Positive(t, seen[want], "%s never came up in %v", want, seen)
	}
}
