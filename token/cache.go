package token

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Default sizes of the verified-token caches.
const (
	DefaultCacheSize         = 10_000
	DefaultNegativeCacheSize = 1_000
	// negativeTTL bounds how long a refusal is remembered.
	negativeTTL = 30 * time.Second
	// HotTierSize bounds the tier of decoded claims: the tokens in use right now.
	HotTierSize = 1024
	// evictionSample is how many entries a full verified tier looks at to pick one to evict.
	evictionSample = 8
)

// tokenCache remembers verification results by the SHA-256 of the token (the token itself is
// never kept). Only the signature and registered-claim checks are cached: route policy is still
// evaluated on every request.
//
// Verified tokens live in two tiers:
//   - verified: every verified token (up to the configured size), as its hash, expiry and key
//     only. The map holds no pointers, so the garbage collector never scans it, and an entry
//     costs about 80 bytes. A hit re-decodes the claims from the token in hand: its hash
//     proves the bytes are the ones that were verified.
//   - hot: the decoded claims of the most recently used tokens, so a token in steady use costs
//     neither decoding nor allocation, and keeps the same *Claims (the gRPC front end memoises
//     responses by it).
//
// An entry lives until the token's exp plus the leeway that verification allowed, and is
// never used once its kid has left the issuer's key set: a hit on it deletes it, and a full
// verified tier evicts, from a small random sample, an entry of a removed key or else the one
// that expires first. A negative entry lives negativeTTL, and only for refusals that time and
// key changes cannot undo (a bad signature, a wrong audience, an expired token; never an
// unknown kid or keys not loaded).
type tokenCache struct {
	hot *lru.Cache[[32]byte, *cachedClaims]
	neg *lru.Cache[[32]byte, *cachedRefusal]

	mu       sync.RWMutex
	verified map[[32]byte]verifiedToken
	size     int
	// keys numbers the (issuer, kid) pairs that verified a token, so entries refer to them
	// without a pointer. It grows only with keys the issuers actually served.
	keys     []keyRef
	keyIndex map[keyRef]uint32

	hits, misses atomic.Uint64
}

type verifiedToken struct {
	expires int64  // exp + leeway, Unix nanoseconds
	key     uint32 // index into tokenCache.keys
}

// keyRef names the key that judged a token: its issuer, kid and fingerprint (the key material:
// a key replaced under the same kid is another key).
type keyRef struct {
	is  *Issuer
	kid string
	fp  [32]byte
}

// stillCurrent reports whether the key is still in its issuer's set, unchanged.
func (ref keyRef) stillCurrent() bool { return stillHasKey(ref.is.Keys, ref.kid, ref.fp) }

type cachedClaims struct {
	claims  *Claims
	key     keyRef    // the key that verified it, to check it is still in its issuer's set
	expires time.Time // exp + leeway
}

type cachedRefusal struct {
	// claims are those of a refused token whose signature verified (an expired one, say), as
	// Verify returns them for the logs; nil otherwise.
	claims *Claims
	// key is the key a refusal was judged with (a bad signature, or claims refused after the
	// signature verified); zero for refusals made before any key. The refusal is forgotten
	// when that key leaves the set, as a verified token is: without the key the token is
	// refused for its unknown kid.
	key     keyRef
	err     error
	expires time.Time
}

// keyChecker is the optional KeySource method the cache uses to notice a removed or replaced
// key without triggering a fetch. *jwks.Set implements it.
type keyChecker interface {
	KeyFingerprint(kid string) ([32]byte, bool)
}

func newTokenCache(size, negSize int) (*tokenCache, error) {
	if size <= 0 {
		return nil, nil
	}
	if negSize <= 0 {
		negSize = 1
	}
	hot, err := lru.New[[32]byte, *cachedClaims](min(size, HotTierSize))
	if err != nil {
		return nil, err
	}
	neg, err := lru.New[[32]byte, *cachedRefusal](negSize)
	if err != nil {
		return nil, err
	}
	return &tokenCache{hot: hot, neg: neg, size: size,
		verified: make(map[[32]byte]verifiedToken), keyIndex: make(map[keyRef]uint32)}, nil
}

// lookup returns a cached result for token, whose hash is h: claims or a refusal on a hit.
func (tc *tokenCache) lookup(h [32]byte, token string, now time.Time) (c *Claims, hit bool, err error) {
	if e, ok := tc.hot.Get(h); ok {
		if now.Before(e.expires) && e.key.stillCurrent() {
			tc.hits.Add(1)
			return e.claims, true, nil
		}
		tc.hot.Remove(h)
	}
	if c := tc.lookupVerified(h, token, now); c != nil {
		tc.hits.Add(1)
		return c, true, nil
	}
	if e, ok := tc.neg.Get(h); ok {
		if now.Before(e.expires) && (e.key.is == nil || e.key.stillCurrent()) {
			tc.hits.Add(1)
			return e.claims, true, e.err
		}
		tc.neg.Remove(h)
	}
	tc.misses.Add(1)
	return nil, false, nil
}

// lookupVerified finds h in the verified tier and decodes the token's claims again.
func (tc *tokenCache) lookupVerified(h [32]byte, token string, now time.Time) *Claims {
	tc.mu.RLock()
	e, ok := tc.verified[h]
	var ref keyRef
	if ok {
		ref = tc.keys[e.key]
	}
	tc.mu.RUnlock()
	if !ok {
		return nil
	}
	if now.UnixNano() >= e.expires || !ref.stillCurrent() {
		tc.mu.Lock()
		delete(tc.verified, h)
		tc.mu.Unlock()
		return nil
	}
	// The token hashes to one that verified, so its payload decodes as it did then.
	_, p, _, _ := splitCompact(token)
	payload, err := b64(p)
	if err != nil {
		return nil
	}
	c, err := decodeVerifiedClaims(payload)
	if err != nil {
		return nil
	}
	c.intern(ref.is, ref.kid)
	tc.hot.Add(h, &cachedClaims{claims: c, key: ref, expires: time.Unix(0, e.expires)})
	return c
}

func stillHasKey(keys KeySource, kid string, fp [32]byte) bool {
	kc, ok := keys.(keyChecker)
	if !ok {
		return true
	}
	current, ok := kc.KeyFingerprint(kid)
	return ok && current == fp
}

// putClaims remembers verified claims c of the token hashed h, verified by key ref.
func (tc *tokenCache) putClaims(h [32]byte, c *Claims, ref keyRef, leeway time.Duration) {
	expires := c.Expiry.Add(leeway)
	tc.hot.Add(h, &cachedClaims{claims: c, key: ref, expires: expires})

	tc.mu.Lock()
	defer tc.mu.Unlock()
	idx, ok := tc.keyIndex[ref]
	if !ok {
		idx = uint32(len(tc.keys))
		tc.keys = append(tc.keys, ref)
		tc.keyIndex[ref] = idx
	}
	if _, ok := tc.verified[h]; !ok && len(tc.verified) >= tc.size {
		tc.evictOne()
	}
	tc.verified[h] = verifiedToken{expires: expires.UnixNano(), key: idx}
}

// evictOne removes, of a few entries at random (Go randomises where map iteration starts),
// one whose key has left the issuer's set, or else the one that expires first (expired ones
// included). Called with tc.mu held.
func (tc *tokenCache) evictOne() {
	var victim [32]byte
	first := int64(0)
	n := 0
	for h, e := range tc.verified {
		if ref := tc.keys[e.key]; !ref.stillCurrent() {
			victim = h
			break
		}
		if n == 0 || e.expires < first {
			victim, first = h, e.expires
		}
		if n++; n == evictionSample {
			break
		}
	}
	delete(tc.verified, victim)
}

// putRefusal remembers refusals that stay refusals, with what Verify returned: the claims (c)
// when the signature verified, and the key that judged the signature, if any.
func (tc *tokenCache) putRefusal(h [32]byte, c *Claims, key keyRef, err error, now time.Time) {
	r := &cachedRefusal{claims: c, key: key, err: err, expires: now.Add(negativeTTL)}
	switch ReasonOf(err) {
	case ErrMalformed, ErrAmbiguousClaims, ErrTooLarge, ErrForbiddenHdr, ErrIssuer, ErrAlgorithm, ErrNoKeyID,
		ErrSignature, ErrAudience, ErrNoExpiry, ErrExpired, ErrClientID:
		tc.neg.Add(h, r)
	}
}

// len is the number of verified tokens cached.
func (tc *tokenCache) len() int {
	tc.mu.RLock()
	defer tc.mu.RUnlock()
	return len(tc.verified)
}

// hashToken hashes token in place: converting a ~1 KiB token to []byte would copy it on every
// request, and Sum256 only reads its input.
func hashToken(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}
