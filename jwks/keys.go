package jwks

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/platformauth/envoy-okta-authz/internal/keyalg"
)

// Key is one verification key from the issuer's set.
type Key struct {
	ID string
	// Algs are the signature algorithms this key may verify: its own "alg" when the set names
	// one, otherwise those its type supports, always within the configured allowlist.
	Algs []string
	// Public is the raw public key: *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Public any
	// Fingerprint identifies the key material (SHA-256 of its PKIX encoding): an issuer that
	// replaces a key under the same kid changes it, and what was verified with the old key
	// must not count as verified with the new one.
	Fingerprint [32]byte
}

// Allows reports whether the key may verify a signature made with alg.
func (k Key) Allows(alg string) bool { return slices.Contains(k.Algs, alg) }

// SupportedAlg reports whether alg is an asymmetric signature algorithm this package can verify.
func SupportedAlg(alg string) bool { return keyalg.Supported(alg) }

type skippedKey struct{ kid, reason string }

// parseKeySet parses a JWK Set and keeps the keys usable for signatures with an allowed
// algorithm. It fails when no key is usable, so a broken set never replaces a good one.
func parseKeySet(body []byte, allowed []string) (map[string]Key, []skippedKey, error) {
	// Keys are parsed one by one: jwx fails a whole set on one key it rejects, and one odd key
	// (an encryption key, a new key type) must not cost the service every other key.
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("parse: %w", err)
	}
	keys := make(map[string]Key, len(set.Keys))
	var skipped []skippedKey
	dups := map[string]bool{}
	for i, raw := range set.Keys {
		jk, err := jwk.ParseKey(raw)
		if err != nil {
			skipped = append(skipped, skippedKey{kid: fmt.Sprintf("#%d", i), reason: err.Error()})
			continue
		}
		k, err := usableKey(jk, allowed)
		if err != nil {
			skipped = append(skipped, skippedKey{kid: k.ID, reason: err.Error()})
			continue
		}
		if _, dup := keys[k.ID]; dup || dups[k.ID] {
			// Two keys with one id make "which key signed this" ambiguous: use neither.
			delete(keys, k.ID)
			dups[k.ID] = true
			skipped = append(skipped, skippedKey{kid: k.ID, reason: "duplicate kid"})
			continue
		}
		keys[k.ID] = k
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("no usable signing key")
	}
	return keys, skipped, nil
}

func usableKey(jk jwk.Key, allowed []string) (Key, error) {
	var k Key
	kid, _ := jk.KeyID()
	k.ID = kid
	if kid == "" {
		return k, errors.New("no kid")
	}
	if use, ok := jk.KeyUsage(); ok && use != "sig" {
		return k, fmt.Errorf("use is %q, not sig", use)
	}
	pub, err := jk.PublicKey()
	if err != nil {
		return k, fmt.Errorf("public key: %w", err)
	}
	var raw any
	if err := jwk.Export(pub, &raw); err != nil {
		return k, fmt.Errorf("export: %w", err)
	}
	typ, err := keyalg.KeyTypeOf(raw)
	if err != nil {
		return k, err
	}
	candidates := allowed
	if a, ok := jk.Algorithm(); ok {
		candidates = []string{a.String()}
	}
	for _, alg := range candidates {
		if slices.Contains(allowed, alg) && keyalg.FitsType(alg, typ) {
			k.Algs = append(k.Algs, alg)
		}
	}
	if len(k.Algs) == 0 {
		return k, fmt.Errorf("no allowed algorithm fits this %s key", typ)
	}
	k.Public = raw
	return k, nil
}
