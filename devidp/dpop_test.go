package devidp_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/dpop"
)

// TestProofWithAnEd25519Key: an Ed25519 proof key signs under RFC 9864's name, Ed25519, as
// panva's dpop library does, and the service's verifier accepts it.
func TestProofWithAnEd25519Key(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	key, err := jwk.Import(priv)
	require.NoError(t, err)
	const uri, token = "https://api.example/api/messages", "a-token"
	proof, err := devidp.Proof(key, "GET", uri, token, time.Now())
	require.NoError(t, err)
	msg, err := jws.Parse([]byte(proof))
	require.NoError(t, err)
	alg, _ := msg.Signatures()[0].ProtectedHeaders().Algorithm()
	assert.Equal(t, "Ed25519", alg.String())

	v, err := dpop.New(dpop.Options{})
	require.NoError(t, err)
	p, err := v.Verify([]string{proof}, dpop.Request{Method: "GET", URI: uri, AccessToken: token})
	require.NoError(t, err)
	jkt, err := devidp.Thumbprint(key)
	require.NoError(t, err)
	assert.Equal(t, jkt, p.Thumbprint)
}
