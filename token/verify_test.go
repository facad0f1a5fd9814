package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/jwks"
)

func TestVerify(t *testing.T) {
	e := newEnv(t, nil)
	e.v.cache = nil // the cases move the clock back and forth; the cache has its own tests
	priv, kid := e.idp.PrivateKey()
	good := e.idp.Claims(devTokenRequest())

	with := func(changes map[string]any) map[string]any {
		c := map[string]any{}
		for k, v := range good {
			c[k] = v
		}
		for k, v := range changes {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	signed := func(claims map[string]any) string {
		return sign(t, priv, jwa.RS256(), map[string]any{"kid": kid}, claims)
	}
	valid := signed(good)
	parts := strings.Split(valid, ".")
	tampered := compact(t, map[string]any{"alg": "RS256", "kid": kid}, with(map[string]any{"sub": "admin"}), parts[2])

	foreignJWK, err := jwk.Import(&foreignKey.PublicKey)
	require.NoError(t, err)

	tests := []struct {
		name    string
		token   string
		now     time.Duration // offset from t0 when checking
		want    *Reason       // nil: valid
		wantSub string
	}{
		{name: "valid", token: valid, wantSub: "test-client"},
		{name: "aud array, one matches", token: signed(with(map[string]any{"aud": []string{"other", "api://default"}}))},
		{name: "wrong audience", token: signed(with(map[string]any{"aud": "api://other"})), want: ErrAudience},
		{name: "no audience", token: signed(with(map[string]any{"aud": nil})), want: ErrAudience},
		{name: "wrong issuer", token: signed(with(map[string]any{"iss": "https://evil.example/oauth2/default"})), want: ErrIssuer},
		{name: "issuer differs by path", token: signed(with(map[string]any{"iss": e.idp.Issuer() + "x"})), want: ErrIssuer},
		{name: "no exp", token: signed(with(map[string]any{"exp": nil})), want: ErrNoExpiry},
		{name: "exp as string", token: signed(with(map[string]any{"exp": "2000000000"})), want: ErrMalformed},
		{name: "expired beyond leeway", token: valid, now: time.Hour + 2*time.Minute + time.Second, want: ErrExpired},
		{name: "expired within leeway", token: valid, now: time.Hour + time.Minute},
		{name: "nbf in the future", token: signed(with(map[string]any{"nbf": t0.Add(5 * time.Minute).Unix()})), want: ErrNotYetValid},
		{name: "nbf within leeway", token: signed(with(map[string]any{"nbf": t0.Add(time.Minute).Unix()}))},
		{name: "iat in the future", token: signed(with(map[string]any{"iat": t0.Add(10 * time.Minute).Unix()})), want: ErrIssuedInFuture},
		{name: "fractional dates", token: signed(with(map[string]any{"iat": float64(t0.Unix()) + 0.5}))},
		{name: "scp not a list", token: signed(with(map[string]any{"scp": 7})), want: ErrMalformed},
		{name: "tampered payload", token: tampered, want: ErrSignature},
		{name: "foreign key reusing a known kid", token: sign(t, foreignKey, jwa.RS256(), map[string]any{"kid": kid}, good), want: ErrSignature},
		{name: "unknown kid", token: sign(t, foreignKey, jwa.RS256(), map[string]any{"kid": "attacker"}, good), want: ErrUnknownKey},
		{name: "no kid", token: sign(t, priv, jwa.RS256(), nil, good), want: ErrNoKeyID},
		{name: "alg none", token: compact(t, map[string]any{"alg": "none", "kid": kid}, good, ""), want: ErrMalformed},
		{name: "alg none with signature", token: compact(t, map[string]any{"alg": "none", "kid": kid}, good, "c2ln"), want: ErrAlgorithm},
		{name: "HS256 keyed with the public key", token: sign(t, publicPEM(t, &priv.PublicKey), jwa.HS256(), map[string]any{"kid": kid}, good), want: ErrAlgorithm},
		{name: "RS512 not allowed", token: sign(t, priv, jwa.RS512(), map[string]any{"kid": kid}, good), want: ErrAlgorithm},
		{name: "embedded jwk", token: sign(t, foreignKey, jwa.RS256(), map[string]any{"kid": kid, "jwk": foreignJWK}, good), want: ErrForbiddenHdr},
		{name: "jku", token: sign(t, priv, jwa.RS256(), map[string]any{"kid": kid, "jku": "https://evil.example/keys"}, good), want: ErrForbiddenHdr},
		{name: "x5u", token: sign(t, priv, jwa.RS256(), map[string]any{"kid": kid, "x5u": "https://evil.example/cert"}, good), want: ErrForbiddenHdr},
		{name: "crit", token: sign(t, priv, jwa.RS256(), map[string]any{"kid": kid, "crit": []string{"exp"}, "exp": 1}, good), want: ErrForbiddenHdr},
		{name: "two parts", token: parts[0] + "." + parts[1], want: ErrMalformed},
		{name: "four parts", token: valid + ".x", want: ErrMalformed},
		{name: "JSON serialization", token: `{"payload":"e30","signatures":[]}`, want: ErrMalformed},
		{name: "padded base64", token: parts[0] + "=." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "header not JSON", token: "bm90anNvbg." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "oversized", token: valid + strings.Repeat("A", MaxTokenBytes), want: ErrTooLarge},
		{name: "empty", token: "", want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.now = t0.Add(tt.now)
			c, err := e.v.Verify(context.Background(), tt.token)
			if tt.want == nil {
				require.NoError(t, err)
				if tt.wantSub != "" {
					assert.Equal(t, tt.wantSub, c.Subject)
				}
				return
			}
			require.Error(t, err, "want %s", tt.want.Code)
			assert.Equal(t, tt.want.Code, ReasonOf(err).Code, "got %v", err)
		})
	}
}

func devTokenRequest() devidp.TokenRequest {
	return devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}}
}

func TestVerifyClientIDAllowlist(t *testing.T) {
	e := newEnv(t, func(c *Issuer) { c.ClientIDs = []string{"allowed-client"} })
	_, err := e.v.Verify(context.Background(), e.mint(t, nil))
	assert.Equal(t, ErrClientID.Code, ReasonOf(err).Code)
	_, err = e.v.Verify(context.Background(), e.mint(t, map[string]any{"cid": "allowed-client"}))
	assert.NoError(t, err)
}

func TestVerifyAudienceAnyOf(t *testing.T) {
	e := newEnv(t, func(c *Issuer) { c.Audiences = []string{"api://one", "api://default"} })
	_, err := e.v.Verify(context.Background(), e.mint(t, nil))
	assert.NoError(t, err)
}

func TestVerifyKeyAlgMustMatchHeader(t *testing.T) {
	// PS256 is allowed, but the issuer's key says alg RS256: a PS256 signature by the same RSA key
	// must not verify.
	e := newEnv(t, func(c *Issuer) { c.Algs = []string{"RS256", "PS256"} })
	priv, kid := e.idp.PrivateKey()
	tok := sign(t, priv, jwa.PS256(), map[string]any{"kid": kid}, e.idp.Claims(devTokenRequest()))
	_, err := e.v.Verify(context.Background(), tok)
	assert.Equal(t, ErrAlgorithm.Code, ReasonOf(err).Code, "got %v", err)
}

func TestVerifyScopesFromScpAndScope(t *testing.T) {
	e := newEnv(t, nil)
	c, err := e.v.Verify(context.Background(), e.mint(t, map[string]any{"scp": []string{"a", "b"}, "scope": "b c"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c"}, c.Scopes)
	assert.True(t, c.HasScope("c"))
}

func TestVerifyRotation(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.idp.Rotate()
	require.NoError(t, err)
	// The new kid is unknown to the cached set: one refetch picks it up.
	_, err = e.v.Verify(context.Background(), e.mint(t, nil))
	require.NoError(t, err)
}

func TestNewVerifierRefusesUnsafeConfig(t *testing.T) {
	_, err := NewVerifier(VerifierConfig{})
	assert.ErrorContains(t, err, "an issuer is required")
	_, err = NewVerifier(VerifierConfig{Issuers: []Issuer{
		{Algs: []string{"none", "HS256"}},
		{Name: "b", URL: "https://x.example", Audiences: []string{"a"}, Algs: []string{"RS256"}, Keys: stubKeys{}},
		{Name: "b", URL: "https://x.example/", Audiences: []string{"a"}, Algs: []string{"RS256"}, Keys: stubKeys{}},
	}, Leeway: -time.Second})
	require.Error(t, err)
	for _, want := range []string{"URL is required", "audience is required", `"none"`, `"HS256"`, "key source",
		"configured twice", "used twice", "leeway"} {
		assert.ErrorContains(t, err, want)
	}
}

// stubKeys knows no keys.
type stubKeys struct{}

func (stubKeys) Key(context.Context, string) (jwks.Key, error) { return jwks.Key{}, jwks.ErrUnknownKID }

func TestMultiIssuerRouting(t *testing.T) {
	a := newEnv(t, nil)
	b := newEnv(t, func(is *Issuer) { is.Audiences = []string{"api://b"} })
	counting := &countingKeys{KeySource: b.keys}
	v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{
		{Name: "okta", URL: a.idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: a.keys},
		{Name: "other", URL: b.idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: counting},
	}, Now: func() time.Time { return t0 }})
	require.NoError(t, err)

	c, err := v.Verify(context.Background(), a.mint(t, nil))
	require.NoError(t, err)
	assert.Equal(t, "okta", c.IssuerName)
	c, err = v.Verify(context.Background(), b.mint(t, nil))
	require.NoError(t, err)
	assert.Equal(t, "other", c.IssuerName)
	before := counting.n

	// A token from issuer a that claims to be from b is checked with b's keys, and fails.
	priv, kid := a.idp.PrivateKey()
	forged := sign(t, priv, jwa.RS256(), map[string]any{"kid": kid}, b.idp.Claims(devTokenRequest()))
	_, err = v.Verify(context.Background(), forged)
	assert.Equal(t, ErrUnknownKey.Code, ReasonOf(err).Code, "got %v", err)
	assert.Equal(t, before+1, counting.n)

	// An unknown iss is refused without asking any key source.
	_, err = v.Verify(context.Background(), a.mint(t, map[string]any{"iss": "https://unknown.example"}))
	assert.Equal(t, ErrIssuer.Code, ReasonOf(err).Code)
	assert.Equal(t, before+1, counting.n, "no key lookup for an unknown issuer")
}

type countingKeys struct {
	KeySource
	n int
}

func (c *countingKeys) Key(ctx context.Context, kid string) (jwks.Key, error) {
	c.n++
	return c.KeySource.Key(ctx, kid)
}

func (c *countingKeys) FetchedAt() time.Time { return c.KeySource.(fetchedAt).FetchedAt() }

func (c *countingKeys) KeyFingerprint(kid string) ([32]byte, bool) {
	return c.KeySource.(keyChecker).KeyFingerprint(kid)
}

// staticKeys serves fixed keys, for algorithms the dev issuer does not use.
type staticKeys map[string]jwks.Key

func (s staticKeys) Key(_ context.Context, kid string) (jwks.Key, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return jwks.Key{}, jwks.ErrUnknownKID
}

func TestVerifyOtherAlgorithms(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	keys := staticKeys{
		"ec":  {ID: "ec", Algs: []string{"ES256"}, Public: &ecKey.PublicKey},
		"ed":  {ID: "ed", Algs: []string{"EdDSA", "Ed25519"}, Public: edPub},
		"rsa": {ID: "rsa", Algs: []string{"PS256"}, Public: &foreignKey.PublicKey},
	}
	v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{{URL: "https://idp.example", Audiences: []string{"api"},
		Algs: []string{"ES256", "EdDSA", "Ed25519", "PS256"}, Keys: keys}}, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	claims := map[string]any{"iss": "https://idp.example", "aud": "api", "exp": t0.Add(time.Hour).Unix(), "sub": "s"}
	for _, tc := range []struct {
		kid string
		alg jwa.SignatureAlgorithm
		key any
	}{{"ec", jwa.ES256(), ecKey}, {"ed", jwa.EdDSA(), edPriv}, {"ed", jwa.EdDSAEd25519(), edPriv}, {"rsa", jwa.PS256(), foreignKey}} {
		c, err := v.Verify(context.Background(), sign(t, tc.key, tc.alg, map[string]any{"kid": tc.kid}, claims))
		require.NoError(t, err, tc.alg.String())
		assert.Equal(t, "s", c.Subject)
	}
	// An ES256 signature presented as EdDSA, against the EC key, fails on the key's algorithm.
	_, err = v.Verify(context.Background(), sign(t, edPriv, jwa.EdDSA(), map[string]any{"kid": "ec"}, claims))
	assert.Equal(t, ErrAlgorithm.Code, ReasonOf(err).Code)
}

// TestIssMustEqualTheDiscoveredIdentifier: the configured issuer may carry a trailing slash the
// issuer does not use (discovery forgives it), but iss must equal the identifier the issuer's
// metadata declares, exactly (RFC 9068 §4).
func TestIssMustEqualTheDiscoveredIdentifier(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.v.Verify(context.Background(), e.mint(t, map[string]any{"iss": e.idp.Issuer() + "/"}))
	assert.Equal(t, ErrIssuer, ReasonOf(err), "a trailing slash the issuer does not use: %v", err)

	slashed, err := jwks.New(jwks.Options{Issuer: e.idp.Issuer() + "/", Algs: []string{"RS256"}, AllowHTTP: true})
	require.NoError(t, err)
	require.NoError(t, slashed.Refresh(context.Background()))
	v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{{URL: e.idp.Issuer() + "/", Audiences: []string{"api://default"},
		Algs: []string{"RS256"}, Keys: slashed}}, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), e.mint(t, nil))
	assert.NoError(t, err, "configured with a slash, the discovered identifier has none, and neither has iss")
	_, err = v.Verify(context.Background(), e.mint(t, map[string]any{"iss": e.idp.Issuer() + "/"}))
	assert.Equal(t, ErrIssuer, ReasonOf(err))
}

func TestRequireATJWT(t *testing.T) {
	e := newEnv(t, func(is *Issuer) { is.RequireATJWT = true })
	e.v.cache = nil
	priv, kid := e.idp.PrivateKey()
	claims := e.idp.Claims(devTokenRequest())
	for typ, ok := range map[string]bool{"at+jwt": true, "AT+JWT": true, "application/at+jwt": true, "JWT": false, "": false, "id+jwt": false} {
		hdr := map[string]any{"kid": kid}
		if typ != "" {
			hdr["typ"] = typ
		}
		_, err := e.v.Verify(context.Background(), sign(t, priv, jwa.RS256(), hdr, claims))
		if ok {
			assert.NoError(t, err, "typ %q", typ)
		} else {
			assert.Equal(t, ErrTokenType, ReasonOf(err), "typ %q: %v", typ, err)
		}
	}
	// Off by default: Okta's access tokens carry no typ.
	plain := newEnv(t, nil)
	_, err := plain.v.Verify(context.Background(), plain.mint(t, nil))
	assert.NoError(t, err)
}

// FuzzVerifiedClaimsDecoding: the token cache reads verified payloads again without checking
// them (strictjson.Members); for every payload decodeClaims accepts (the only ones that can have
// verified), the claims must be the same.
func FuzzVerifiedClaimsDecoding(f *testing.F) {
	for _, seed := range []string{
		`{"ver":1,"jti":"AT.x","iss":"https://example.okta.com/oauth2/default","aud":"api://default","iat":1796069579,"exp":1796073179,"cid":"0oa1","uid":"00u1","scp":["openid","messages:read"],"sub":"ada@example.com","email":"ada@example.com"}`,
		`{"iss":"i","aud":["a","b"],"scope":"a b  c","scp":"x y","exp":1.5,"nbf":null,"cnf":{"jkt":"abc"}}`,
		`{"ISS":"upper","Sub":"mixed","sub":"lower","sub":"dup"}`,
		`{"sub":"\u00e9\ud83d\ude00\u0000","aud":"\xff"}`,
		`{"exp":1e3,"iat":-0,"scp":[],"aud":[]}`,
		`{"exp":"1","scp":[1]}`,
		` {"a":{"b":[1,{"c":null}]}} `,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		want, err := decodeClaims(payload)
		if err != nil {
			return // refused before any signature check: never reaches the cache
		}
		got, err := decodeVerifiedClaims(payload)
		if err != nil {
			t.Fatalf("the cache's decoding refused what verification accepted: %v\n%q", err, payload)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("claims differ for %q:\nverification %+v\ncache        %+v", payload, want, got)
		}
	})
}

// TestForgedKidCannotBlockARotation: a token with a made-up kid spends the unknown-kid
// refetch; when the issuer rotates within the next MinRefetch, tokens signed with the new key
// get 503 kid_not_yet_fetched (retry), not 401 invalid_token (throw the token away) — they
// used to get 401 for up to 30 s — and verify as soon as a refetch is allowed. An unknown kid
// on a token issued before the last fetch is still unknown_kid.
func TestForgedKidCannotBlockARotation(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	idp, _ := devidptest.Start(t, devidp.Config{Now: clock})
	keys, err := jwks.New(jwks.Options{Issuer: idp.Issuer(), Algs: []string{"RS256"}, AllowHTTP: true, Now: clock})
	require.NoError(t, err)
	require.NoError(t, keys.Refresh(context.Background()))
	v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{{URL: idp.Issuer(), Audiences: []string{"api://default"},
		Algs: []string{"RS256"}, Keys: keys}}, Leeway: time.Minute, Now: clock, CacheSize: -1})
	require.NoError(t, err)

	advance(5 * time.Second)
	claims := idp.Claims(devTokenRequest())
	forged := sign(t, foreignKey, jwa.RS256(), map[string]any{"kid": "made-up"}, claims)
	_, err = v.Verify(context.Background(), forged)
	assert.Equal(t, ErrUnknownKey, ReasonOf(err), "the forged kid spends the refetch: %v", err)

	_, err = idp.Rotate()
	require.NoError(t, err)
	advance(2 * time.Second)
	rotated, err := idp.Mint(devTokenRequest())
	require.NoError(t, err)
	for range 3 {
		_, err = v.Verify(context.Background(), rotated)
		assert.Equal(t, ErrKeyNotFetched, ReasonOf(err), "can't tell yet: %v", err)
	}
	old := sign(t, foreignKey, jwa.RS256(), map[string]any{"kid": "other"}, map[string]any{
		"iss": idp.Issuer(), "aud": "api://default", "iat": t0.Add(-time.Hour).Unix(), "exp": t0.Add(time.Hour).Unix()})
	_, err = v.Verify(context.Background(), old)
	assert.Equal(t, ErrUnknownKey, ReasonOf(err), "issued before the fetch: its key would be in the set")

	advance(30 * time.Second)
	_, err = v.Verify(context.Background(), rotated)
	assert.NoError(t, err, "the next refetch brings the new key")
}
