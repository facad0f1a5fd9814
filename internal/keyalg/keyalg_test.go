package keyalg

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFits(t *testing.T) {
	ec256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	tests := []struct {
		alg  string
		key  any
		fits bool
	}{
		{"Ed25519", edPub, true}, // RFC 9864's fully specified name
		{"EdDSA", edPub, true},   // its deprecated polymorphic name, still what issuers send
		{"Ed25519", &ec256.PublicKey, false},
		{"ES256", edPub, false},
		{"ES256", &ec256.PublicKey, true},
		{"ES256", &ec384.PublicKey, false},
		{"ES384", &ec384.PublicKey, true},
		{"RS256", &rsa2048.PublicKey, true},
		{"PS512", &rsa2048.PublicKey, true},
		{"RS256", &rsa1024.PublicKey, false}, // too short
		{"RS256", &ec256.PublicKey, false},
		{"HS256", &rsa2048.PublicKey, false},
		{"Ed448", edPub, false},
		{"ed25519", edPub, false}, // names are case-sensitive (RFC 7515 §4.1.1)
	}
	for _, tt := range tests {
		err := Fits(tt.alg, tt.key)
		assert.Equal(t, tt.fits, err == nil, "Fits(%s, %T): got %v", tt.alg, tt.key, err)
	}
}

func TestSupported(t *testing.T) {
	for _, alg := range []string{"Ed25519", "EdDSA", "ES256", "PS256", "RS512"} {
		assert.True(t, Supported(alg), alg)
	}
	for _, alg := range []string{"none", "HS256", "Ed448", "ED25519", "eddsa", ""} {
		assert.False(t, Supported(alg), alg)
	}
}

// TestNamesListsEverySupportedAlgorithm: the message list and the table are the same set.
func TestNamesListsEverySupportedAlgorithm(t *testing.T) {
	names := strings.Split(Names, ", ")
	var keys []string
	for alg := range keyTypes {
		keys = append(keys, alg)
	}
	slices.Sort(names)
	slices.Sort(keys)
	assert.Equal(t, keys, names)
}
