package authz

import (
	"context"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cachedEnv is an env whose verifier counts key lookups, to tell hits from misses.
func cachedEnv(t *testing.T, size int) (*env, *countingKeys) {
	t.Helper()
	e := newEnv(t, nil)
	counting := &countingKeys{KeySource: e.keys}
	is := *e.v.byIssuer[e.idp.Issuer()]
	is.Keys = counting
	v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{is}, Leeway: 2 * time.Minute, Now: func() time.Time { return e.now }, CacheSize: size})
	require.NoError(t, err)
	e.v = v
	return e, counting
}

func TestCacheHitSkipsVerification(t *testing.T) {
	e, keys := cachedEnv(t, 10)
	tok := e.mint(t, nil)
	c1, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	c2, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Same(t, c1, c2, "the second verification is a cache hit")
	assert.Equal(t, 1, keys.n, "one key lookup for two verifications")
	assert.Equal(t, 1, e.v.CachedTokens())
}

func TestCacheEntryNeverOutlivesExpiry(t *testing.T) {
	e, _ := cachedEnv(t, 10)
	tok := e.mint(t, nil) // exp = t0 + 1h; leeway 2m
	_, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	e.now = t0.Add(time.Hour + time.Minute)
	_, err = e.v.Verify(context.Background(), tok)
	assert.NoError(t, err, "within the leeway verification allowed")
	e.now = t0.Add(time.Hour + 2*time.Minute)
	_, err = e.v.Verify(context.Background(), tok)
	assert.Equal(t, ErrExpired.Code, reasonOf(err).Code, "a cached token expires like an uncached one")
}

func TestCacheDropsEntriesOfRemovedKeys(t *testing.T) {
	e, _ := cachedEnv(t, 10)
	tok := e.mint(t, nil)
	_, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	// Two rotations push the signing key out of the dev issuer's set.
	for range 2 {
		_, err := e.idp.Rotate()
		require.NoError(t, err)
	}
	require.NoError(t, e.keys.Refresh(context.Background()))
	_, err = e.v.Verify(context.Background(), tok)
	assert.Equal(t, ErrUnknownKey.Code, reasonOf(err).Code, "got %v", err)
}

func TestNegativeCache(t *testing.T) {
	e, keys := cachedEnv(t, 10)
	tok := e.mint(t, nil)
	forged := tok[:len(tok)-4] + "AAAA"
	for range 3 {
		_, err := e.v.Verify(context.Background(), forged)
		assert.Equal(t, ErrSignature.Code, reasonOf(err).Code)
	}
	assert.Equal(t, 1, keys.n, "a bad signature is verified once, then refused from the cache")

	// An unknown kid is not cached: the key may arrive with the next refetch.
	priv, _ := e.idp.PrivateKey()
	unknown := sign(t, priv, jwa.RS256(), map[string]any{"kid": "not-yet"}, e.idp.Claims(devTokenRequest()))
	for range 2 {
		_, err := e.v.Verify(context.Background(), unknown)
		assert.Equal(t, ErrUnknownKey.Code, reasonOf(err).Code)
	}
	assert.Equal(t, 3, keys.n)

	e.now = t0.Add(negativeTTL + time.Second)
	_, _ = e.v.Verify(context.Background(), forged)
	assert.Equal(t, 4, keys.n, "refusals are remembered for a short time only")
}

func TestCacheIsBounded(t *testing.T) {
	e, _ := cachedEnv(t, 3)
	for range 10 {
		_, err := e.v.Verify(context.Background(), e.mint(t, nil))
		require.NoError(t, err)
	}
	assert.Equal(t, 3, e.v.CachedTokens())
}

func TestPolicyStillAppliesToCachedTokens(t *testing.T) {
	e, _ := cachedEnv(t, 10)
	e.az = NewAuthorizer(e.v, Options{})
	tok := e.mint(t, nil)
	r := &Request{Path: "/m", Authorization: []string{"Bearer " + tok}}
	require.Equal(t, Allow, e.az.Decide(context.Background(), r).Outcome)
	p, err := LoadPolicy([]byte("rules:\n  - {name: m, match: {path: /m}, require: {scopes: [admin]}}\n"), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(p)
	assert.Equal(t, InsufficientScope, e.az.Decide(context.Background(), r).Outcome, "scopes are checked on every request")
}
