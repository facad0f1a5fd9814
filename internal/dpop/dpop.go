// Package dpop verifies DPoP proofs (RFC 9449 §4.3): the JWT a client signs with its own key
// for every request, binding the request (method, URI, access token) to that key. It knows
// nothing of issuers or route policies: the caller verifies the access token, compares the
// proof key's thumbprint with the token's cnf.jkt (§7), and then records the proof so that it
// is accepted once (Verifier.Remember, with a ReplayStore).
package dpop

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/platformauth/envoy-okta-authz/internal/keyalg"
	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
)

// Failure is why a proof was refused. Code is stable (logs, metrics); Description is a fixed
// sentence safe for error_description: nothing of the request is in it.
type Failure struct {
	Code        string
	Description string
}

func (f *Failure) Error() string { return f.Description }

// The failures, in the order the checks meet them. Every one is invalid_dpop_proof (RFC 9449
// §7.1) but ErrStoreUnavailable, which says the proof could not be checked for replay.
var (
	ErrMissing          = &Failure{"dpop_missing", "A DPoP proof is required"}
	ErrMultiple         = &Failure{"dpop_multiple", "There is more than one DPoP proof"}
	ErrMalformed        = &Failure{"dpop_malformed", "The DPoP proof is malformed"}
	ErrType             = &Failure{"dpop_typ", "The DPoP proof's typ is not dpop+jwt"}
	ErrAlg              = &Failure{"dpop_alg", "The DPoP proof's algorithm is not allowed"}
	ErrKey              = &Failure{"dpop_jwk", "The DPoP proof's jwk is not an acceptable public key"}
	ErrPrivateKey       = &Failure{"dpop_private_key", "The DPoP proof's jwk holds a private key"}
	ErrSignature        = &Failure{"dpop_signature", "The DPoP proof's signature is invalid"}
	ErrJTI              = &Failure{"dpop_jti", "The DPoP proof's jti is missing or too long"}
	ErrMethod           = &Failure{"dpop_htm", "The DPoP proof's htm does not match the request method"}
	ErrURI              = &Failure{"dpop_htu", "The DPoP proof's htu does not match the request URI"}
	ErrTooOld           = &Failure{"dpop_iat_old", "The DPoP proof is too old"}
	ErrFuture           = &Failure{"dpop_iat_future", "The DPoP proof is issued in the future"}
	ErrATH              = &Failure{"dpop_ath", "The DPoP proof's ath does not match the access token"}
	ErrReplay           = &Failure{"dpop_replay", "The DPoP proof has been used before"}
	ErrStoreUnavailable = &Failure{"dpop_replay_store_unavailable", "DPoP proofs cannot be checked for replay right now"}
)

// Failures lists every failure, for metrics and documentation.
var Failures = []*Failure{ErrMissing, ErrMultiple, ErrMalformed, ErrType, ErrAlg, ErrKey, ErrPrivateKey,
	ErrSignature, ErrJTI, ErrMethod, ErrURI, ErrTooOld, ErrFuture, ErrATH, ErrReplay, ErrStoreUnavailable}

// DefaultAlgs are the proof algorithms accepted by default: asymmetric, as RFC 9449 requires.
// Ed25519 is RFC 9864's name for what EdDSA names with an Ed25519 key: clients that follow
// RFC 9864 (panva's dpop library) send it, older ones EdDSA.
var DefaultAlgs = []string{"ES256", "RS256", "PS256", "EdDSA", "Ed25519"}

const (
	// DefaultMaxAge is how old a proof's iat may be (plus the leeway).
	DefaultMaxAge = 5 * time.Minute
	// MaxProofBytes caps a proof before anything parses it.
	MaxProofBytes = 8 << 10
	// maxJTI bounds the jti; only its hash is stored (RFC 9449 §11.1).
	maxJTI = 256
	// keyCacheSize bounds the parsed proof keys kept by the hash of their JWK.
	keyCacheSize = 1024
	// usedCacheSize bounds the recently used proofs recognised by their hash alone.
	usedCacheSize = 4096
)

// Options configure a Verifier.
type Options struct {
	// Algs are the accepted proof algorithms (default DefaultAlgs); each must be asymmetric.
	Algs []string
	// MaxAge is how old a proof may be (default DefaultMaxAge); Leeway is the clock skew
	// allowed on top of it, and into the future.
	MaxAge, Leeway time.Duration
	// Replay records the proofs seen; nil keeps them in memory (NewMemoryStore's defaults).
	Replay ReplayStore
	Now    func() time.Time
}

// Verifier checks proofs. It is safe for concurrent use.
type Verifier struct {
	opts Options
	keys *lru.Cache[[32]byte, proofKey]
	// used holds the SHA-256 of recently used proofs: the very same bytes again are a replay,
	// refused before the signature is checked, so a replay flood costs one hash per request.
	used *lru.Cache[[32]byte, struct{}]
}

// proofKey is a parsed proof key: the raw public key and its RFC 7638 thumbprint.
type proofKey struct {
	pub        any
	thumbprint string
}

// New returns a Verifier, or an error naming every unacceptable setting.
func New(opts Options) (*Verifier, error) {
	if opts.Algs == nil {
		opts.Algs = DefaultAlgs
	}
	var errs []error
	for _, a := range opts.Algs {
		if !keyalg.Supported(a) {
			errs = append(errs, fmt.Errorf("dpop: algorithm %q is not allowed: proofs are signed with asymmetric keys (%s)", a, keyalg.Names))
		}
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.MaxAge < 0 || opts.Leeway < 0 {
		errs = append(errs, errors.New("dpop: max age and leeway must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Replay == nil {
		opts.Replay = NewMemoryStore(MemoryOptions{Now: opts.Now})
	}
	keys, _ := lru.New[[32]byte, proofKey](keyCacheSize) // cannot fail: the sizes are positive
	used, _ := lru.New[[32]byte, struct{}](usedCacheSize)
	return &Verifier{opts: opts, keys: keys, used: used}, nil
}

// Algs returns the accepted proof algorithms, for the DPoP challenge's algs parameter.
func (v *Verifier) Algs() []string { return v.opts.Algs }

// Request is what a proof must match.
type Request struct {
	Method string
	// URI is the request's absolute URI (scheme, host and path; a query is ignored).
	URI string
	// AccessToken is the token the proof's ath must hash; empty for a token request, whose
	// proof must then carry no ath.
	AccessToken string
}

// Proof is a verified proof.
type Proof struct {
	// Thumbprint is the RFC 7638 SHA-256 thumbprint (base64url) of the proof's key: the
	// token's cnf.jkt must equal it.
	Thumbprint string
	jti        string
	IssuedAt   time.Time
	hash       [32]byte // of the proof as sent
}

// proofHeader is the protected header of a proof.
type proofHeader struct {
	typ, alg string
	jwk      json.RawMessage
}

// parseHeader reads the header's members by exact name (object): a crit or b64 member is
// refused, as extensions this verifier does not implement.
func parseHeader(b []byte) (proofHeader, bool) {
	m, err := object(b, "typ", "alg", "jwk", "crit", "b64")
	if err != nil {
		return proofHeader{}, false
	}
	_, crit := m["crit"]
	_, b64 := m["b64"]
	var h proofHeader
	var okTyp, okAlg bool
	h.typ, okTyp = stringMember(m, "typ")
	h.alg, okAlg = stringMember(m, "alg")
	h.jwk = m["jwk"]
	return h, okTyp && okAlg && !crit && !b64
}

// proofClaims are the claims a proof is checked on.
type proofClaims struct {
	jti, htm, htu, ath string
	iat                json.RawMessage
}

// parseClaims reads the claims by exact name (object).
func parseClaims(b []byte) (proofClaims, bool) {
	m, err := object(b, "jti", "htm", "htu", "iat", "ath")
	if err != nil {
		return proofClaims{}, false
	}
	var c proofClaims
	var okJTI, okHTM, okHTU, okATH bool
	c.jti, okJTI = stringMember(m, "jti")
	c.htm, okHTM = stringMember(m, "htm")
	c.htu, okHTU = stringMember(m, "htu")
	c.ath, okATH = stringMember(m, "ath")
	c.iat = m["iat"]
	return c, okJTI && okHTM && okHTU && okATH
}

var rawURL = base64.RawURLEncoding.Strict()

// Verify checks the request's DPoP header values (exactly one proof) against req, as RFC 9449
// §4.3 lays out, but for replay (Remember) and the token binding (the caller's) — except that
// the very bytes of a recently used proof are refused as a replay at once. It returns a
// *Failure when the proof is refused.
func (v *Verifier) Verify(values []string, req Request) (*Proof, error) {
	switch {
	case len(values) == 0:
		return nil, ErrMissing
	case len(values) > 1 || strings.Contains(values[0], ","): // Envoy joins repeated headers with ","
		return nil, ErrMultiple
	}
	proof := strings.TrimSpace(values[0])
	if len(proof) > MaxProofBytes {
		return nil, ErrMalformed
	}
	hash := sha256.Sum256([]byte(proof))
	if v.used.Contains(hash) {
		return nil, ErrReplay
	}
	h, p, s, ok := split(proof)
	if !ok {
		return nil, ErrMalformed
	}
	hb, err := rawURL.DecodeString(h)
	if err != nil {
		return nil, ErrMalformed
	}
	hdr, ok := parseHeader(hb)
	if !ok {
		return nil, ErrMalformed
	}
	if !strings.EqualFold(hdr.typ, "dpop+jwt") {
		return nil, ErrType
	}
	if !slices.Contains(v.opts.Algs, hdr.alg) {
		return nil, ErrAlg
	}
	key, err := v.parseKey(hdr.jwk)
	if err != nil {
		return nil, err
	}
	if err := keyalg.Fits(hdr.alg, key.pub); err != nil {
		return nil, ErrKey
	}
	sig, err := rawURL.DecodeString(s)
	if err != nil {
		return nil, ErrMalformed
	}
	alg, ok := jwa.LookupSignatureAlgorithm(hdr.alg)
	if !ok {
		return nil, ErrAlg
	}
	verifier, err := jws.VerifierFor(alg)
	if err != nil || verifier.Verify(key.pub, []byte(proof[:len(h)+1+len(p)]), sig) != nil {
		return nil, ErrSignature
	}

	pb, err := rawURL.DecodeString(p)
	if err != nil {
		return nil, ErrMalformed
	}
	c, ok := parseClaims(pb)
	if !ok {
		return nil, ErrMalformed
	}
	if c.jti == "" || len(c.jti) > maxJTI {
		return nil, ErrJTI
	}
	if c.htm != req.Method {
		return nil, ErrMethod
	}
	if !SameURI(c.htu, req.URI) {
		return nil, ErrURI
	}
	iat, err := numericDate(c.iat)
	if err != nil {
		return nil, ErrMalformed
	}
	now := v.opts.Now()
	switch {
	case iat.After(now.Add(v.opts.Leeway)):
		return nil, ErrFuture
	case now.Sub(iat) > v.opts.MaxAge+v.opts.Leeway:
		return nil, ErrTooOld
	}
	// With an access token ath must hash it; without (a token request) it must be absent.
	if req.AccessToken != "" || c.ath != "" {
		sum := sha256.Sum256([]byte(req.AccessToken))
		if req.AccessToken == "" || c.ath != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return nil, ErrATH
		}
	}
	return &Proof{Thumbprint: key.thumbprint, jti: c.jti, IssuedAt: iat, hash: hash}, nil
}

// Remember records a verified proof, once its key is known to be the token's: ErrReplay when
// the proof was seen within its acceptance window, ErrTooOld when the store no longer vouches
// for proofs of this key issued that early (it had to forget one, see MemoryStore),
// ErrStoreUnavailable when the store could not say (the caller must not accept the proof then).
func (v *Verifier) Remember(ctx context.Context, p *Proof) error {
	// A proof is accepted until MaxAge+Leeway after its iat; remembering it a leeway longer
	// covers every moment it could be replayed, on this replica's clock or another's.
	u := Use{ID: sha256.Sum256([]byte(p.Thumbprint + "\x00" + p.jti)), Owner: p.Thumbprint,
		IssuedAt: p.IssuedAt, Expires: p.IssuedAt.Add(v.opts.MaxAge + 2*v.opts.Leeway)}
	first, err := v.opts.Replay.FirstUse(ctx, u)
	switch {
	case errors.Is(err, ErrTooOld):
		return ErrTooOld
	case err != nil:
		return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	v.used.Add(p.hash, struct{}{})
	if !first {
		return ErrReplay
	}
	return nil
}

// privateMembers are the JWK members that hold private key material (RFC 7518 §6).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// keyMembers are the JWK members that define a public key, and so its RFC 7638 thumbprint,
// and the private ones: read by exact name, like the header's.
var keyMembers = append([]string{"kty", "crv", "x", "y", "n", "e"}, privateMembers...)

// parseKey parses the proof's jwk header: a public key only (a private member is refused, as
// RFC 9449 §4.3 step 7 asks), cached by the hash of its JSON.
func (v *Verifier) parseKey(raw json.RawMessage) (proofKey, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return proofKey{}, ErrKey
	}
	h := sha256.Sum256(raw)
	if k, ok := v.keys.Get(h); ok {
		return k, nil
	}
	// A member named twice, or a case variant of a key member, could make another reader of
	// this JWK (the issuer that bound the token to its thumbprint) see another key.
	members, err := object(raw, keyMembers...)
	if err != nil {
		return proofKey{}, ErrKey
	}
	for _, private := range privateMembers {
		if _, ok := members[private]; ok {
			return proofKey{}, ErrPrivateKey
		}
	}
	jk, err := jwk.ParseKey(raw)
	if err != nil {
		return proofKey{}, ErrKey
	}
	var pub any
	if err := jwk.Export(jk, &pub); err != nil {
		return proofKey{}, ErrKey
	}
	tp, err := jk.Thumbprint(crypto.SHA256)
	if err != nil {
		return proofKey{}, ErrKey
	}
	k := proofKey{pub: pub, thumbprint: base64.RawURLEncoding.EncodeToString(tp)}
	v.keys.Add(h, k)
	return k, nil
}

// SameURI reports whether a proof's htu names the request URI uri, ignoring query and
// fragment (RFC 9449 §4.3 step 9), after syntax- and scheme-based normalisation (RFC 3986
// §6.2.2, §6.2.3): scheme and host case-insensitive, a default port dropped, the path in the
// canonical form route policies use (reqpath).
func SameURI(htu, uri string) bool {
	a, okA := normaliseURI(htu)
	b, okB := normaliseURI(uri)
	return okA && okB && a == b
}

func normaliseURI(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "80" && scheme == "http" || port == "443" && scheme == "https" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	p, err := reqpath.Parse(path)
	if err != nil {
		return "", false
	}
	return scheme + "://" + host + p.Canonical, true
}

func split(token string) (h, p, s string, ok bool) {
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	return h, p, s, ok1 && ok2 && h != "" && p != "" && s != "" && !strings.Contains(s, ".")
}

func numericDate(raw json.RawMessage) (time.Time, error) {
	var f float64
	if len(raw) == 0 || json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, errors.New("iat is not a NumericDate")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
