package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/jwks"
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

// withoutHotTier shrinks the tier of decoded claims to one entry, so that verifying a second
// token sends the first to the verified tier only.
func withoutHotTier(t *testing.T, e *env) {
	t.Helper()
	hot, err := lru.New[[32]byte, *cachedClaims](1)
	require.NoError(t, err)
	e.v.cache.hot = hot
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
	assert.Equal(t, ErrExpired.Code, ReasonOf(err).Code, "a cached token expires like an uncached one")
}

func TestCacheDropsEntriesOfRemovedKeys(t *testing.T) {
	e, _ := cachedEnv(t, 10)
	tok := e.mint(t, nil)
	_, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	dropSigningKey(t, e)
	_, err = e.v.Verify(context.Background(), tok)
	assert.Equal(t, ErrUnknownKey.Code, ReasonOf(err).Code, "got %v", err)
}

// dropSigningKey rotates the dev issuer's key twice, which pushes the key that signed the
// tokens minted so far out of its set, and reloads the set.
func dropSigningKey(t *testing.T, e *env) {
	t.Helper()
	for range 2 {
		_, err := e.idp.Rotate()
		require.NoError(t, err)
	}
	require.NoError(t, e.keys.Refresh(context.Background()))
}

func TestVerifiedTierDecodesTheSameClaims(t *testing.T) {
	e, keys := cachedEnv(t, 10)
	withoutHotTier(t, e)
	tok := e.mint(t, map[string]any{"uid": "00u1", "scope": "extra:scope"})
	first, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	_, err = e.v.Verify(context.Background(), e.mint(t, nil)) // pushes tok out of the hot tier
	require.NoError(t, err)

	again, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, 2, keys.n, "the third verification is a hit in the verified tier")
	assert.NotSame(t, first, again, "decoded again from the token")
	assert.Equal(t, first, again, "to the very claims verification produced")
	third, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Same(t, again, third, "and back in the hot tier")
}

func TestVerifiedTierHonoursExpiryAndKeys(t *testing.T) {
	e, _ := cachedEnv(t, 10)
	withoutHotTier(t, e)
	tok := e.mint(t, nil) // exp = t0 + 1h; leeway 2m
	_, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	_, err = e.v.Verify(context.Background(), e.mint(t, nil))
	require.NoError(t, err)

	e.now = t0.Add(time.Hour + 2*time.Minute)
	_, err = e.v.Verify(context.Background(), tok)
	assert.Equal(t, ErrExpired.Code, ReasonOf(err).Code, "got %v", err)

	e.now = t0 // clocks do not go back, but this token was never refused
	other := e.mint(t, map[string]any{"jti": "other"})
	_, err = e.v.Verify(context.Background(), other)
	require.NoError(t, err)
	_, err = e.v.Verify(context.Background(), e.mint(t, nil))
	require.NoError(t, err)
	dropSigningKey(t, e)
	_, err = e.v.Verify(context.Background(), other)
	assert.Equal(t, ErrUnknownKey.Code, ReasonOf(err).Code, "got %v", err)
}

func TestCacheEvictsWhatExpiresFirst(t *testing.T) {
	e, _ := cachedEnv(t, 3) // smaller than the eviction sample: the choice is deterministic
	withoutHotTier(t, e)
	var toks []string
	for _, exp := range []time.Duration{50 * time.Minute, 10 * time.Minute, 30 * time.Minute, 40 * time.Minute} {
		tok := e.mint(t, map[string]any{"exp": t0.Add(exp).Unix()})
		_, err := e.v.Verify(context.Background(), tok)
		require.NoError(t, err)
		toks = append(toks, tok)
	}
	assert.Equal(t, 3, e.v.CachedTokens())
	e.v.cache.mu.RLock()
	defer e.v.cache.mu.RUnlock()
	_, kept := e.v.cache.verified[hashToken(toks[1])]
	assert.False(t, kept, "the token expiring first was evicted")
	for _, i := range []int{0, 2, 3} {
		_, kept := e.v.cache.verified[hashToken(toks[i])]
		assert.True(t, kept, "token %d", i)
	}
}

func TestCacheEvictsEntriesOfRemovedKeysFirst(t *testing.T) {
	e, _ := cachedEnv(t, 2)
	withoutHotTier(t, e)
	old := e.mint(t, map[string]any{"exp": t0.Add(50 * time.Minute).Unix()})
	_, err := e.v.Verify(context.Background(), old)
	require.NoError(t, err)
	dropSigningKey(t, e)
	soon := e.mint(t, map[string]any{"exp": t0.Add(10 * time.Minute).Unix()})
	later := e.mint(t, map[string]any{"exp": t0.Add(40 * time.Minute).Unix()})
	for _, tok := range []string{soon, later} {
		_, err := e.v.Verify(context.Background(), tok)
		require.NoError(t, err)
	}
	e.v.cache.mu.RLock()
	defer e.v.cache.mu.RUnlock()
	_, kept := e.v.cache.verified[hashToken(old)]
	assert.False(t, kept, "the entry whose key is gone made room, though it expires last")
	_, kept = e.v.cache.verified[hashToken(soon)]
	assert.True(t, kept)
}

// TestCacheUnderConcurrentChurn: more tokens than either tier holds, verified from many
// goroutines, so entries are evicted and re-decoded while others read them.
func TestCacheUnderConcurrentChurn(t *testing.T) {
	e := newEnv(t, nil) // its key source is safe for concurrent use; countingKeys is not
	cache, err := newTokenCache(8, 8)
	require.NoError(t, err)
	cache.hot, err = lru.New[[32]byte, *cachedClaims](3)
	require.NoError(t, err)
	e.v.cache = cache
	toks := make([]string, 20)
	for i := range toks {
		toks[i] = e.mint(t, map[string]any{"sub": fmt.Sprintf("user-%d", i)})
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := range 200 {
				i := (w*7 + n*3) % len(toks)
				c, err := e.v.Verify(context.Background(), toks[i])
				if !assert.NoError(t, err) || !assert.Equal(t, fmt.Sprintf("user-%d", i), c.Subject) {
					return
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, e.v.CachedTokens(), 8)
}

func TestNegativeCache(t *testing.T) {
	e, keys := cachedEnv(t, 10)
	tok := e.mint(t, nil)
	forged := tok[:len(tok)-4] + "AAAA"
	for range 3 {
		_, err := e.v.Verify(context.Background(), forged)
		assert.Equal(t, ErrSignature.Code, ReasonOf(err).Code)
	}
	assert.Equal(t, 1, keys.n, "a bad signature is verified once, then refused from the cache")

	// An unknown kid is not cached: the key may arrive with the next refetch.
	priv, _ := e.idp.PrivateKey()
	unknown := sign(t, priv, jwa.RS256(), map[string]any{"kid": "not-yet"}, e.idp.Claims(devTokenRequest()))
	for range 2 {
		_, err := e.v.Verify(context.Background(), unknown)
		assert.Equal(t, ErrUnknownKey.Code, ReasonOf(err).Code)
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

// TestCacheForgetsAKeyReplacedUnderItsKid: an issuer that replaces the key material under the
// same kid makes every token the old key verified unverified again; they used to stay valid
// from the cache until they expired.
func TestCacheForgetsAKeyReplacedUnderItsKid(t *testing.T) {
	keyA, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	var current atomic.Pointer[rsa.PrivateKey]
	current.Store(keyA)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		k, err := jwk.Import(&current.Load().PublicKey)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_ = k.Set(jwk.KeyIDKey, "k1")
		_ = k.Set(jwk.AlgorithmKey, jwa.RS256())
		set := jwk.NewSet()
		_ = set.AddKey(k)
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer srv.Close()
	keys, err := jwks.New(jwks.Options{Issuer: "https://issuer.example", JWKSURL: srv.URL, Algs: []string{"RS256"}, AllowHTTP: true})
	require.NoError(t, err)
	require.NoError(t, keys.Refresh(context.Background()))
	v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{{URL: "https://issuer.example", Audiences: []string{"api"},
		Algs: []string{"RS256"}, Keys: keys}}, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	hot, err := lru.New[[32]byte, *cachedClaims](1) // one decoded token: the other is in the verified tier only
	require.NoError(t, err)
	v.cache.hot = hot
	claims := map[string]any{"iss": "https://issuer.example", "aud": "api", "sub": "s", "exp": t0.Add(time.Hour).Unix(), "iat": t0.Unix()}
	tok := sign(t, keyA, jwa.RS256(), map[string]any{"kid": "k1"}, claims)
	other := sign(t, keyA, jwa.RS256(), map[string]any{"kid": "k1"}, map[string]any{"iss": "https://issuer.example", "aud": "api", "sub": "t", "exp": t0.Add(time.Hour).Unix()})
	_, err = v.Verify(context.Background(), tok)
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), other)
	require.NoError(t, err)

	keyB, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	current.Store(keyB)
	require.NoError(t, keys.Refresh(context.Background()))
	for _, tk := range []string{tok, other} {
		_, err = v.Verify(context.Background(), tk)
		assert.Equal(t, ErrSignature, ReasonOf(err), "a token of the replaced key: %v", err)
	}
	_, err = v.Verify(context.Background(), sign(t, keyB, jwa.RS256(), map[string]any{"kid": "k1"}, claims))
	assert.NoError(t, err, "the new key's tokens verify")
}
