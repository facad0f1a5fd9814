package jwks

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEd25519Keys: an issuer's Ed25519 key verifies the algorithm names the allowlist and the
// key admit — RFC 9864's Ed25519, the deprecated EdDSA, or both for a key that names neither;
// a key that names one is used with that one only, as for every other key type.
func TestEd25519Keys(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	okp := func(kid, alg string) json.RawMessage {
		m := map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": base64.RawURLEncoding.EncodeToString(pub)}
		if alg != "" {
			m["alg"] = alg
		}
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return b
	}
	set := func(keys ...json.RawMessage) []byte {
		b, err := json.Marshal(map[string]any{"keys": keys})
		require.NoError(t, err)
		return b
	}
	tests := []struct {
		name    string
		key     json.RawMessage
		allowed []string
		want    []string // nil: the key is skipped
	}{
		{"no alg, both allowed", okp("k", ""), []string{"EdDSA", "Ed25519"}, []string{"EdDSA", "Ed25519"}},
		{"no alg, Ed25519 allowed", okp("k", ""), []string{"RS256", "Ed25519"}, []string{"Ed25519"}},
		{"alg Ed25519", okp("k", "Ed25519"), []string{"EdDSA", "Ed25519"}, []string{"Ed25519"}},
		{"alg EdDSA", okp("k", "EdDSA"), []string{"EdDSA", "Ed25519"}, []string{"EdDSA"}},
		{"alg EdDSA, only Ed25519 allowed", okp("k", "EdDSA"), []string{"Ed25519"}, nil},
		{"alg Ed25519, not allowed", okp("k", "Ed25519"), []string{"RS256", "EdDSA"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, skipped, err := parseKeySet(set(tt.key, okp("other", "")), tt.allowed)
			if tt.want == nil {
				require.NoError(t, err, "the other key is usable")
				assert.NotContains(t, keys, "k")
				require.Len(t, skipped, 1)
				assert.Equal(t, "k", skipped[0].kid)
				return
			}
			require.NoError(t, err)
			require.Contains(t, keys, "k")
			assert.Equal(t, tt.want, keys["k"].Algs)
			assert.Equal(t, pub, keys["k"].Public)
		})
	}
}
