package authz

import (
	"crypto/sha256"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Default sizes of the verified-token caches.
const (
	DefaultCacheSize         = 10_000
	DefaultNegativeCacheSize = 1_000
	// negativeTTL bounds how long a refusal is remembered.
	negativeTTL = 30 * time.Second
)

// tokenCache remembers verification results by the SHA-256 of the token (the token itself is
// never kept). Only the signature and registered-claim checks are cached: route policy is still
// evaluated on every request.
//
// A positive entry lives until the token's exp plus the leeway that verification allowed, and
// is dropped when its kid leaves the issuer's key set. A negative entry lives negativeTTL, and
// only for refusals that time and key changes cannot undo (a bad signature, a wrong audience,
// an expired token; never an unknown kid or keys not loaded).
type tokenCache struct {
	pos          *lru.Cache[[32]byte, *cachedClaims]
	neg          *lru.Cache[[32]byte, *cachedRefusal]
	hits, misses atomic.Uint64
}

type cachedClaims struct {
	claims  *Claims
	keys    KeySource // the issuer's key set, to check that claims.KeyID is still in it
	expires time.Time // exp + leeway
}

type cachedRefusal struct {
	err     error
	expires time.Time
}

// keyChecker is the optional KeySource method the cache uses to notice a removed key without
// triggering a fetch. *jwks.Set implements it.
type keyChecker interface {
	HasKey(kid string) bool
}

func newTokenCache(size, negSize int) (*tokenCache, error) {
	if size <= 0 {
		return nil, nil
	}
	if negSize <= 0 {
		negSize = 1
	}
	pos, err := lru.New[[32]byte, *cachedClaims](size)
	if err != nil {
		return nil, err
	}
	neg, err := lru.New[[32]byte, *cachedRefusal](negSize)
	if err != nil {
		return nil, err
	}
	return &tokenCache{pos: pos, neg: neg}, nil
}

// lookup returns a cached result for the token hash: claims or a refusal on a hit.
func (tc *tokenCache) lookup(h [32]byte, now time.Time) (c *Claims, hit bool, err error) {
	if e, ok := tc.pos.Get(h); ok {
		if now.Before(e.expires) && stillHasKey(e.keys, e.claims.KeyID) {
			tc.hits.Add(1)
			return e.claims, true, nil
		}
		tc.pos.Remove(h)
	}
	if e, ok := tc.neg.Get(h); ok {
		if now.Before(e.expires) {
			tc.hits.Add(1)
			return nil, true, e.err
		}
		tc.neg.Remove(h)
	}
	tc.misses.Add(1)
	return nil, false, nil
}

func stillHasKey(keys KeySource, kid string) bool {
	kc, ok := keys.(keyChecker)
	return !ok || kc.HasKey(kid)
}

func (tc *tokenCache) putClaims(h [32]byte, c *Claims, keys KeySource, leeway time.Duration) {
	tc.pos.Add(h, &cachedClaims{claims: c, keys: keys, expires: c.Expiry.Add(leeway)})
}

// putRefusal remembers refusals that stay refusals.
func (tc *tokenCache) putRefusal(h [32]byte, err error, now time.Time) {
	switch reasonOf(err) {
	case ErrMalformed, ErrTooLarge, ErrForbiddenHdr, ErrIssuer, ErrAlgorithm, ErrNoKeyID,
		ErrSignature, ErrAudience, ErrNoExpiry, ErrExpired, ErrClientID:
		tc.neg.Add(h, &cachedRefusal{err: err, expires: now.Add(negativeTTL)})
	}
}

func (tc *tokenCache) len() int { return tc.pos.Len() }

func hashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }
