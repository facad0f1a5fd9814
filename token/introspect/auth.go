package introspect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Auth is how the service authenticates to the endpoint.
type Auth string

// The client authentication methods (RFC 6749 §2.3, RFC 7523 §2.2, OpenID Connect Core §9).
const (
	ClientSecretBasic Auth = "client_secret_basic"
	ClientSecretPost  Auth = "client_secret_post"
	ClientSecretJWT   Auth = "client_secret_jwt"
	PrivateKeyJWT     Auth = "private_key_jwt"
	// None sends the client id alone, as a public client may (Okta's SPA clients; Hydra's
	// admin endpoint needs no client at all).
	None Auth = "none"
)

// Auths lists the methods.
var Auths = []Auth{ClientSecretBasic, ClientSecretPost, ClientSecretJWT, PrivateKeyJWT, None}

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionTTL is the lifetime of a client assertion: it is used once, at once.
const assertionTTL = time.Minute

// check says what cfg lacks for the method.
func (a Auth) check(cfg Config) error {
	var errs []error
	switch a {
	case ClientSecretBasic, ClientSecretPost, ClientSecretJWT:
		if cfg.ClientID == "" || cfg.Secret == "" {
			errs = append(errs, fmt.Errorf("introspect: %s needs a client id and a client secret", a))
		}
	case PrivateKeyJWT:
		if cfg.ClientID == "" || cfg.Key == nil {
			errs = append(errs, fmt.Errorf("introspect: %s needs a client id and a key file", a))
		}
	case None:
	default:
		errs = append(errs, fmt.Errorf("introspect: client authentication %q is not one of %s", a, joinAuths()))
	}
	return errors.Join(errs...)
}

func joinAuths() string {
	var s []string
	for _, a := range Auths {
		s = append(s, string(a))
	}
	return strings.Join(s, ", ")
}

// ParseAuth reads a method name.
func ParseAuth(s string) (Auth, error) {
	if a := Auth(s); slices.Contains(Auths, a) {
		return a, nil
	}
	return "", fmt.Errorf("%q is not one of %s", s, joinAuths())
}

// apply adds the method's form fields and reports whether HTTP Basic must be set.
func (a Auth) apply(form url.Values, cfg Config, endpoint string, now time.Time) (basic bool, err error) {
	switch a {
	case ClientSecretBasic:
		return true, nil
	case ClientSecretPost:
		form.Set("client_id", cfg.ClientID)
		form.Set("client_secret", cfg.Secret)
	case ClientSecretJWT, PrivateKeyJWT:
		assertion, err := a.assertion(cfg, endpoint, now)
		if err != nil {
			return false, err
		}
		form.Set("client_id", cfg.ClientID)
		form.Set("client_assertion_type", assertionType)
		form.Set("client_assertion", assertion)
	case None:
		if cfg.ClientID != "" {
			form.Set("client_id", cfg.ClientID)
		}
	}
	return false, nil
}

// assertion is an RFC 7523 client assertion: iss and sub the client, aud the endpoint itself
// (Okta refuses one whose aud is the token endpoint), a fresh jti, a minute's life.
func (a Auth) assertion(cfg Config, endpoint string, now time.Time) (string, error) {
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	tok, err := jwt.NewBuilder().Issuer(cfg.ClientID).Subject(cfg.ClientID).Audience([]string{endpoint}).
		JwtID(hex.EncodeToString(jti)).IssuedAt(now).Expiration(now.Add(assertionTTL)).Build()
	if err != nil {
		return "", err
	}
	var signed []byte
	if a == ClientSecretJWT {
		signed, err = jwt.Sign(tok, jwt.WithKey(jwa.HS256(), []byte(cfg.Secret)))
	} else {
		hdr := jws.NewHeaders()
		if err := hdr.Set(jws.KeyIDKey, cfg.Key.KeyID); err != nil {
			return "", err
		}
		signed, err = jwt.Sign(tok, jwt.WithKey(cfg.Key.Alg, cfg.Key.Private, jws.WithProtectedHeaders(hdr)))
	}
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	return string(signed), nil
}

// SigningKey signs private_key_jwt assertions.
type SigningKey struct {
	Private crypto.Signer
	Alg     jwa.SignatureAlgorithm
	// KeyID is the kid the authorization server knows the public key by.
	KeyID string
}

// LoadKey reads a private key for private_key_jwt: a private JWK (its kid and alg are used; Okta
// gives one when it generates the key) or a PEM file (PKCS#8, PKCS#1 or SEC 1; the kid is then
// the key's RFC 7638 thumbprint). RSA keys sign RS256, P-256 ES256, P-384 ES384, Ed25519 EdDSA.
func LoadKey(path string) (*SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("introspect: key file: %w", err)
	}
	var signer crypto.Signer
	kid, alg := "", ""
	if block, _ := pem.Decode(data); block != nil {
		if signer, err = parsePEMKey(block); err != nil {
			return nil, fmt.Errorf("introspect: key file %s: %w", path, err)
		}
	} else {
		k, err := jwk.ParseKey(data)
		if err != nil {
			return nil, fmt.Errorf("introspect: key file %s: neither PEM nor a JWK: %w", path, err)
		}
		var raw any
		if err := jwk.Export(k, &raw); err != nil {
			return nil, fmt.Errorf("introspect: key file %s: %w", path, err)
		}
		s, ok := raw.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("introspect: key file %s: not a private key", path)
		}
		signer = s
		kid, _ = k.KeyID()
		if a, ok := k.Algorithm(); ok {
			alg = a.String()
		}
	}
	if kid == "" {
		pub, err := jwk.Import(signer.Public())
		if err != nil {
			return nil, fmt.Errorf("introspect: key file %s: %w", path, err)
		}
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, err
		}
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	sk := &SigningKey{Private: signer, KeyID: kid}
	if k, ok := signer.(*rsa.PrivateKey); ok && k.N.BitLen() < 2048 {
		return nil, fmt.Errorf("introspect: key file %s: an RSA key of fewer than 2048 bits", path)
	}
	if alg == "" {
		alg, err = defaultAlg(signer)
		if err != nil {
			return nil, fmt.Errorf("introspect: key file %s: %w", path, err)
		}
	}
	a, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok || strings.HasPrefix(alg, "HS") || alg == "none" {
		return nil, fmt.Errorf("introspect: key file %s: algorithm %q cannot sign a private_key_jwt assertion", path, alg)
	}
	sk.Alg = a
	return sk, nil
}

func parsePEMKey(block *pem.Block) (crypto.Signer, error) {
	for _, parse := range []func([]byte) (any, error){
		x509.ParsePKCS8PrivateKey,
		func(b []byte) (any, error) { return x509.ParsePKCS1PrivateKey(b) },
		func(b []byte) (any, error) { return x509.ParseECPrivateKey(b) },
	} {
		if k, err := parse(block.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
		}
	}
	return nil, fmt.Errorf("a %q block that is not a private key this service can use", block.Type)
}

func defaultAlg(s crypto.Signer) (string, error) {
	switch k := s.(type) {
	case *rsa.PrivateKey:
		return "RS256", nil
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().Name {
		case "P-256":
			return "ES256", nil
		case "P-384":
			return "ES384", nil
		case "P-521":
			return "ES512", nil
		}
	case ed25519.PrivateKey:
		return "EdDSA", nil
	}
	return "", fmt.Errorf("a %T key", s)
}
