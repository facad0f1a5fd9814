// Package keyalg says which asymmetric JWS algorithms the service verifies and which public
// keys fit them. Issuer keys (jwks) and DPoP proof keys (dpop) are held to the same rules.
package keyalg

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
)

// keyTypes maps each supported JWS algorithm to the key type it needs (and, for EC, the
// curve). HMAC and "none" are deliberately absent: a public key can never authorize them.
// Ed25519 is RFC 9864's fully specified name for EdDSA with an Ed25519 key (what panva's dpop
// library sends); EdDSA, which RFC 9864 deprecates, stays because most issuers still send it.
// Both verify the same signature scheme; Ed448 is not supported (no key type for it here).
var keyTypes = map[string]string{
	"RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
	"PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
	"ES256": "P-256", "ES384": "P-384", "ES512": "P-521",
	"EdDSA": "Ed25519", "Ed25519": "Ed25519",
}

// Names lists the supported algorithms, for messages.
const Names = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519"

// MinRSABits is the smallest RSA modulus accepted.
const MinRSABits = 2048

// Supported reports whether alg is an asymmetric signature algorithm the service can verify.
func Supported(alg string) bool { _, ok := keyTypes[alg]; return ok }

// KeyTypeOf names a raw public key's type as the algorithms need it ("RSA", "P-256", …,
// "Ed25519"), and rejects weak or unknown keys.
func KeyTypeOf(raw any) (string, error) {
	switch pk := raw.(type) {
	case *rsa.PublicKey:
		if pk.N.BitLen() < MinRSABits {
			return "", fmt.Errorf("RSA key of %d bits is too short", pk.N.BitLen())
		}
		return "RSA", nil
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256():
			return "P-256", nil
		case elliptic.P384():
			return "P-384", nil
		case elliptic.P521():
			return "P-521", nil
		}
		return "", errors.New("unsupported curve")
	case ed25519.PublicKey:
		return "Ed25519", nil
	default:
		return "", fmt.Errorf("unsupported key type %T", raw)
	}
}

// FitsType reports whether alg needs a key of type typ (as KeyTypeOf names it).
func FitsType(alg, typ string) bool { return keyTypes[alg] == typ }

// Fits reports whether the supported algorithm alg can verify with the raw public key.
func Fits(alg string, raw any) error {
	typ, err := KeyTypeOf(raw)
	if err != nil {
		return err
	}
	if !FitsType(alg, typ) {
		return fmt.Errorf("a %s key cannot verify %s", typ, alg)
	}
	return nil
}
