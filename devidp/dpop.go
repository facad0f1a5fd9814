package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// The client side of DPoP (RFC 9449), for curl and grpcurl users and for tests: a client key,
// and the proof a client sends with every request.

// NewProofKey generates a client key for DPoP proofs: ECDSA P-256, signing ES256.
func NewProofKey() (jwk.Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devidp: generate proof key: %w", err)
	}
	return jwk.Import(priv)
}

// LoadProofKey reads a private JWK from path, creating the file (mode 0600) with a new key
// when it does not exist; created says which.
func LoadProofKey(path string) (key jwk.Key, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key, err := NewProofKey()
		if err != nil {
			return nil, false, err
		}
		js, err := json.Marshal(key)
		if err != nil {
			return nil, false, err
		}
		if err := os.WriteFile(path, append(js, '\n'), 0o600); err != nil {
			return nil, false, fmt.Errorf("devidp: write proof key: %w", err)
		}
		return key, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("devidp: read proof key: %w", err)
	}
	key, err = jwk.ParseKey(data)
	if err != nil {
		return nil, false, fmt.Errorf("devidp: proof key %s: %w", path, err)
	}
	return key, false, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint (base64url) of key's public part: what a
// DPoP-bound token's cnf.jkt holds.
func Thumbprint(key jwk.Key) (string, error) {
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// Proof signs a DPoP proof with key for a request: typ dpop+jwt, the public key in jwk, a fresh
// jti, htm, htu (uri without query and fragment), iat now, and — with an access token — ath,
// the base64url SHA-256 of the token.
func Proof(key jwk.Key, method, uri, accessToken string, now time.Time) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("devidp: proof URL %q must be absolute", uri)
	}
	u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
	pub, err := key.PublicKey()
	if err != nil {
		return "", fmt.Errorf("devidp: proof key: %w", err)
	}
	alg, err := proofAlg(key)
	if err != nil {
		return "", err
	}
	claims := map[string]any{"jti": randomHex(16), "htm": method, "htu": u.String(), "iat": now.Unix()}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "dpop+jwt"); err != nil {
		return "", err
	}
	if err := hdr.Set(jws.JWKKey, pub); err != nil {
		return "", err
	}
	proof, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("devidp: sign proof: %w", err)
	}
	return string(proof), nil
}

// proofAlg picks the signing algorithm for a proof key.
func proofAlg(key jwk.Key) (jwa.SignatureAlgorithm, error) {
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return jwa.SignatureAlgorithm{}, fmt.Errorf("devidp: proof key: %w", err)
	}
	switch k := raw.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jwa.ES256(), nil
		case elliptic.P384():
			return jwa.ES384(), nil
		}
	case *rsa.PrivateKey:
		return jwa.PS256(), nil
	case ed25519.PrivateKey:
		// RFC 9864's fully specified name, as panva's dpop library sends it (not EdDSA).
		return jwa.EdDSAEd25519(), nil
	}
	return jwa.SignatureAlgorithm{}, fmt.Errorf("devidp: a %T cannot sign DPoP proofs here (use P-256, P-384, RSA or Ed25519)", raw)
}
