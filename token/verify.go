package token

import (
	"context"
	"encoding/base64"

	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unique"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/platformauth/envoy-okta-authz/internal/keyalg"
	"github.com/platformauth/envoy-okta-authz/internal/strictjson"
	"github.com/platformauth/envoy-okta-authz/jwks"
)

// MaxTokenBytes caps a bearer token before anything parses it. Okta's access tokens are about
// 1 KiB; 16 KiB leaves room for many custom claims.
const MaxTokenBytes = 16 << 10

// KeySource finds verification keys by id. *jwks.Set implements it.
type KeySource interface {
	Key(ctx context.Context, kid string) (jwks.Key, error)
}

// Issuer is one trusted token issuer and what its tokens must satisfy, apart from route policy.
type Issuer struct {
	// Name identifies the issuer in policy rules and logs ("default" when empty).
	Name      string
	URL       string   // routes tokens by iss (a trailing slash aside); see identifier
	Audiences []string // any-of with aud
	ClientIDs []string // allowlist for cid; empty allows any
	Algs      []string // allowed header alg values
	// RequireATJWT demands the RFC 9068 header typ "at+jwt", so that the issuer's ID tokens
	// and other JWTs signed with the same keys never pass as access tokens.
	RequireATJWT bool
	Keys         KeySource
	// Introspection, when set, asks the issuer about its tokens (RFC 7662): nil is
	// IntrospectOff.
	Introspection *Introspection
}

// issuerIdentifier is the optional KeySource method that names the issuer identifier its
// metadata declared (jwks.Set has it); iss must equal it exactly.
type issuerIdentifier interface {
	IssuerID() string
}

// identifier is the value iss must equal exactly: the identifier the issuer's metadata
// declared, or the configured URL when there is none.
func (is *Issuer) identifier() string {
	if k, ok := is.Keys.(issuerIdentifier); ok {
		if id := k.IssuerID(); id != "" {
			return id
		}
	}
	return is.URL
}

// VerifierConfig lists the trusted issuers and the clock rules shared by all.
type VerifierConfig struct {
	Issuers []Issuer
	Leeway  time.Duration // clock skew allowed on exp, nbf and iat
	Now     func() time.Time
	// KeyWait caps how long a verification may wait for a refetch caused by an unknown kid
	// (default 2s).
	KeyWait time.Duration
	// CacheSize bounds the verified-token cache (0: DefaultCacheSize; negative: no cache);
	// NegativeCacheSize bounds the cache of refusals (0: DefaultNegativeCacheSize).
	CacheSize, NegativeCacheSize int
}

// Verifier checks JWT access tokens: compact JWS only; the token is routed to its issuer by its
// (not yet trusted) iss claim, so an unknown issuer costs no key fetch; then allowed algorithm,
// known kid, signature, and the issuer's rules for aud and cid, and exp, nbf and iat.
type Verifier struct {
	cfg      VerifierConfig
	byIssuer map[string]*Issuer // keyed by URL without a trailing slash
	cache    *tokenCache        // nil when disabled
	// opaque is the issuer that introspects tokens that are not JWTs, if one does.
	opaque *Issuer
}

// NewVerifier returns a Verifier. It refuses configurations that could never be safe.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	var errs []error
	if len(cfg.Issuers) == 0 {
		errs = append(errs, errors.New("an issuer is required"))
	}
	v := &Verifier{byIssuer: map[string]*Issuer{}}
	names := map[string]bool{}
	for i := range cfg.Issuers {
		is := &cfg.Issuers[i]
		if is.Name == "" {
			is.Name = "default"
		}
		errs = append(errs, is.validate()...)
		key := strings.TrimSuffix(is.URL, "/")
		if _, dup := v.byIssuer[key]; dup {
			errs = append(errs, fmt.Errorf("issuer %s is configured twice", is.URL))
		}
		if names[is.Name] {
			errs = append(errs, fmt.Errorf("issuer name %q is used twice", is.Name))
		}
		names[is.Name] = true
		v.byIssuer[key] = is
		if is.Introspection.takesOpaque() {
			if v.opaque != nil {
				errs = append(errs, errTwoOpaqueIssuers)
			}
			v.opaque = is
		}
	}
	if cfg.Leeway < 0 {
		errs = append(errs, errors.New("leeway must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.KeyWait <= 0 {
		cfg.KeyWait = 2 * time.Second
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.NegativeCacheSize == 0 {
		cfg.NegativeCacheSize = DefaultNegativeCacheSize
	}
	cache, err := newTokenCache(cfg.CacheSize, cfg.NegativeCacheSize)
	if err != nil {
		return nil, fmt.Errorf("token: cache: %w", err)
	}
	v.cfg, v.cache = cfg, cache
	return v, nil
}

// Caches reports whether verified tokens are cached (then a token's verifications share one
// *Claims while it stays in the cache's hot tier).
func (v *Verifier) Caches() bool { return v.cache != nil }

// Now is the verifier's clock: the time claims are judged at.
func (v *Verifier) Now() time.Time { return v.cfg.Now() }

// Leeway is the clock skew allowed on the token's times (exp, nbf, iat; and a rule's max_age).
func (v *Verifier) Leeway() time.Duration { return v.cfg.Leeway }

// CachedTokens is the number of verified tokens in the cache.
func (v *Verifier) CachedTokens() int {
	if v.cache == nil {
		return 0
	}
	return v.cache.len()
}

func (is *Issuer) validate() []error {
	var errs []error
	if is.URL == "" {
		errs = append(errs, fmt.Errorf("issuer %q: an issuer URL is required", is.Name))
	}
	if len(is.Audiences) == 0 {
		errs = append(errs, fmt.Errorf("issuer %q: at least one audience is required", is.Name))
	}
	if len(is.Algs) == 0 {
		errs = append(errs, fmt.Errorf("issuer %q: at least one algorithm is required", is.Name))
	}
	for _, a := range is.Algs {
		if !jwks.SupportedAlg(a) {
			errs = append(errs, fmt.Errorf("issuer %q: algorithm %q is not allowed: only asymmetric signature algorithms (%s) can be verified with a public key set", is.Name, a, keyalg.Names))
		}
	}
	if is.Keys == nil {
		errs = append(errs, fmt.Errorf("issuer %q: a key source is required", is.Name))
	}
	if in := is.Introspection; in != nil {
		switch {
		case !slices.Contains(IntrospectionModes, in.Mode):
			errs = append(errs, fmt.Errorf("issuer %q: introspection %q is not off, opaque or always", is.Name, in.Mode))
		case in.Mode != IntrospectOff && in.Client == nil:
			errs = append(errs, fmt.Errorf("issuer %q: introspection %s needs an introspection client", is.Name, in.Mode))
		}
	}
	return errs
}

// IssuerNames returns the names of the configured issuers.
func (v *Verifier) IssuerNames() []string {
	var out []string
	for _, is := range v.cfg.Issuers {
		out = append(out, is.Name)
	}
	return out
}

// jwsHeader is the protected header: the members the verifier reads, and whether it has the
// members it refuses to honour.
type jwsHeader struct {
	Alg, Kid, Typ string
	// refused names the first member the verifier refuses (see forbidden).
	refused string
}

// set reads one header member by its exact name. Keys named or embedded by the token (jku, x5u,
// jwk, x5c), critical extensions it cannot honour (crit) and unencoded payloads (b64) are
// refused; other members are ignored, as RFC 7515 §4 asks of names a reader does not know.
func (h *jwsHeader) set(name, value []byte) error {
	var dst *string
	switch n := string(name); n {
	case "alg":
		dst = &h.Alg
	case "kid":
		dst = &h.Kid
	case "typ":
		dst = &h.Typ
	case "jku", "x5u", "jwk", "x5c", "crit", "b64":
		if h.refused == "" {
			h.refused = n
		}
		return nil
	default:
		return nil
	}
	s, ok := strictjson.String(value)
	if !ok {
		return fmt.Errorf("%s: want a string", name)
	}
	*dst = s
	return nil
}

// forbidden names the first member the verifier refuses, or "".
func (h *jwsHeader) forbidden() string { return h.refused }

// parseCompact returns the decoded protected header of a compact JWS, checking its shape only.
func parseCompact(token string) (hdr jwsHeader, signingInput, payload, sig []byte, err error) {
	if len(token) > MaxTokenBytes {
		return hdr, nil, nil, nil, ErrTooLarge
	}
	h, p, s, ok := splitCompact(token)
	if !ok {
		return hdr, nil, nil, nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	hb, err := b64(h)
	if err != nil {
		return hdr, nil, nil, nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if err := strictjson.Object(hb, hdr.set); err != nil {
		return hdr, nil, nil, nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if payload, err = b64(p); err != nil {
		return hdr, nil, nil, nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if sig, err = b64(s); err != nil {
		return hdr, nil, nil, nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	return hdr, []byte(token[:len(h)+1+len(p)]), payload, sig, nil
}

// splitCompact splits a compact JWS into its three non-empty, still encoded parts.
func splitCompact(token string) (header, payload, sig string, ok bool) {
	header, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	ok = ok1 && ok2 && header != "" && payload != "" && sig != "" && !strings.Contains(sig, ".")
	return header, payload, sig, ok
}

var rawURL = base64.RawURLEncoding.Strict()

func b64(s string) ([]byte, error) { return rawURL.DecodeString(s) }

// Verify checks token and returns its claims, or an error wrapping one Reason. Claims are
// returned with an error only when the signature verified, or the issuer vouched for them (so
// logs never show forged claims). The claims are shared with the caches: callers must not
// modify them.
//
// A compact JWS is verified locally, then introspected when its issuer says IntrospectAlways;
// any other token goes to the issuer that introspects opaque tokens, or is malformed.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if v.opaque != nil && !looksLikeJWS(token) {
		return v.verifyOpaque(ctx, token)
	}
	c, err := v.verifyJWT(ctx, token)
	if err != nil || c == nil {
		return c, err
	}
	if is := v.issuerNamed(c.IssuerName); is != nil && is.Introspection != nil && is.Introspection.Mode == IntrospectAlways {
		return v.introspectJWT(ctx, is, token, c)
	}
	return c, nil
}

// issuerNamed is the issuer configured under name (the verified claims' IssuerName).
func (v *Verifier) issuerNamed(name string) *Issuer {
	for i := range v.cfg.Issuers {
		if v.cfg.Issuers[i].Name == name {
			return &v.cfg.Issuers[i]
		}
	}
	return nil
}

// verifyJWT is Verify for a token verified locally, with the token cache.
func (v *Verifier) verifyJWT(ctx context.Context, token string) (*Claims, error) {
	if v.cache == nil {
		c, _, err := v.verify(ctx, token)
		return c, err
	}
	h := hashToken(token)
	now := v.cfg.Now()
	if c, hit, err := v.cache.lookup(h, token, now); hit {
		return c, err
	}
	c, key, err := v.verify(ctx, token)
	if err != nil {
		v.cache.putRefusal(h, c, key, err, now)
		return c, err
	}
	v.cache.putClaims(h, c, key, v.cfg.Leeway)
	return c, nil
}

// verify does the work of Verify, and says which key judged the signature (zero when none
// did): the cache ties what it remembers, acceptance or refusal, to that key.
func (v *Verifier) verify(ctx context.Context, token string) (*Claims, keyRef, error) {
	hdr, signingInput, payload, sig, err := parseCompact(token)
	if err != nil {
		return nil, keyRef{}, err
	}
	// Keys named or embedded by the token itself are never used; a token that carries them is
	// not what Okta issues, so it is refused rather than silently half-honoured.
	if name := hdr.forbidden(); name != "" {
		return nil, keyRef{}, fmt.Errorf("%w: %s", ErrForbiddenHdr, name)
	}
	c, err := decodeClaims(payload)
	if err != nil {
		return nil, keyRef{}, err
	}
	// Route by the untrusted iss: only the chosen issuer's keys can make it trusted.
	is, ok := v.byIssuer[strings.TrimSuffix(c.Issuer, "/")]
	if !ok {
		return nil, keyRef{}, fmt.Errorf("%w: %q", ErrIssuer, c.Issuer)
	}
	if !slices.Contains(is.Algs, hdr.Alg) {
		return nil, keyRef{}, fmt.Errorf("%w: %q", ErrAlgorithm, hdr.Alg)
	}
	if is.RequireATJWT && !isATJWT(hdr.Typ) {
		return nil, keyRef{}, fmt.Errorf("%w: %q", ErrTokenType, hdr.Typ)
	}
	if hdr.Kid == "" {
		return nil, keyRef{}, ErrNoKeyID
	}
	kctx, cancel := context.WithTimeout(ctx, v.cfg.KeyWait)
	key, err := is.Keys.Key(kctx, hdr.Kid)
	cancel()
	switch {
	case errors.Is(err, jwks.ErrNotLoaded):
		return nil, keyRef{}, ErrKeysNotLoaded
	case errors.Is(err, jwks.ErrKIDNotFetched) && v.mayBeNewKey(is, c):
		return nil, keyRef{}, fmt.Errorf("%w: kid %q", ErrKeyNotFetched, hdr.Kid)
	case err != nil:
		return nil, keyRef{}, fmt.Errorf("%w: kid %q", ErrUnknownKey, hdr.Kid)
	}
	if !key.Allows(hdr.Alg) {
		return nil, keyRef{}, fmt.Errorf("%w: key %q does not allow %s", ErrAlgorithm, hdr.Kid, hdr.Alg)
	}
	alg, ok := jwa.LookupSignatureAlgorithm(hdr.Alg)
	if !ok {
		return nil, keyRef{}, fmt.Errorf("%w: %q", ErrAlgorithm, hdr.Alg)
	}
	verifier, err := jws.VerifierFor(alg)
	if err != nil {
		return nil, keyRef{}, fmt.Errorf("%w: %v", ErrAlgorithm, err)
	}
	if err := verifier.Verify(key.Public, signingInput, sig); err != nil {
		return nil, keyRef{is, hdr.Kid, key.Fingerprint}, fmt.Errorf("%w: kid %q", ErrSignature, hdr.Kid)
	}
	c.intern(is, key.ID)
	judged := keyRef{is, key.ID, key.Fingerprint}
	// Routing by iss forgave a trailing slash; the verified iss must be the issuer's
	// identifier exactly (RFC 9068 §4).
	if c.Issuer != is.identifier() {
		return c, judged, fmt.Errorf("%w: %q is not the issuer identifier %q", ErrIssuer, c.Issuer, is.identifier())
	}
	if err := v.checkClaims(is, c); err != nil {
		return c, judged, err
	}
	return c, judged, nil
}

// fetchedAt is the optional KeySource method that says when the current key set was fetched
// (jwks.Set has it).
type fetchedAt interface {
	FetchedAt() time.Time
}

// mayBeNewKey reports whether an unknown kid that may not be refetched yet could name a key the
// issuer published after the current set was fetched: the token (whose claims no signature
// vouches for yet) says it was issued after that fetch, leeway allowed, or does not say when.
// A key that signed a token issued before the fetch would have been in it: that kid is unknown.
func (v *Verifier) mayBeNewKey(is *Issuer, c *Claims) bool {
	fa, ok := is.Keys.(fetchedAt)
	if !ok || c.IssuedAt.IsZero() {
		return true
	}
	return c.IssuedAt.After(fa.FetchedAt().Add(-v.cfg.Leeway))
}

// isATJWT reports whether a header typ is RFC 9068's "at+jwt" (media types are
// case-insensitive, and the "application/" prefix may be written out, RFC 7515 §4.1.9).
func isATJWT(typ string) bool {
	return strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), "at+jwt")
}

// intern replaces the strings that repeat across tokens (issuer, kid, client id, audiences,
// scopes) by shared copies, so that the verified-token cache holds each once.
func (c *Claims) intern(is *Issuer, kid string) {
	c.KeyID, c.IssuerName = kid, is.Name
	if c.Issuer == is.URL {
		c.Issuer = is.URL
	}
	c.ClientID = unique.Make(c.ClientID).Value()
	for i, a := range c.Audience {
		c.Audience[i] = unique.Make(a).Value()
	}
	for i, s := range c.Scopes {
		c.Scopes[i] = unique.Make(s).Value()
	}
}

// checkClaims applies the registered-claim rules to signature-verified claims.
func (v *Verifier) checkClaims(is *Issuer, c *Claims) error {
	switch {
	case !is.acceptsAudience(c.Audience):
		return fmt.Errorf("%w: %q", ErrAudience, c.Audience)
	case c.Expiry.IsZero():
		return ErrNoExpiry
	}
	return v.checkLifetimeAndClient(is, c)
}

// checkLifetimeAndClient holds the rules a verified JWT and an introspection answer share: not
// expired (when exp is there: a JWT's was required above), not before nbf, not issued in the
// future, and a client on the issuer's allow-list.
func (v *Verifier) checkLifetimeAndClient(is *Issuer, c *Claims) error {
	now, lw := v.cfg.Now(), v.cfg.Leeway
	switch {
	case !c.Expiry.IsZero() && !now.Before(c.Expiry.Add(lw)):
		return fmt.Errorf("%w: at %s", ErrExpired, c.Expiry.UTC().Format(time.RFC3339))
	case !c.NotBefore.IsZero() && now.Add(lw).Before(c.NotBefore):
		return fmt.Errorf("%w: until %s", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	case !c.IssuedAt.IsZero() && now.Add(lw).Before(c.IssuedAt):
		return fmt.Errorf("%w: at %s", ErrIssuedInFuture, c.IssuedAt.UTC().Format(time.RFC3339))
	case len(is.ClientIDs) > 0 && !slices.Contains(is.ClientIDs, c.ClientID):
		return fmt.Errorf("%w: %q", ErrClientID, c.ClientID)
	}
	return nil
}

// acceptsAudience reports whether one of aud is an audience the issuer's tokens are accepted for.
func (is *Issuer) acceptsAudience(aud []string) bool {
	return slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(is.Audiences, a) })
}
