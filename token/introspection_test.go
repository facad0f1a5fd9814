package token

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/token/introspect"
)

// introspectionEnv is a dev issuer with an opaque-token client and a resource-server client,
// and a verifier introspecting its tokens in the given mode; calls counts the calls that reach
// the introspection endpoint.
type introspectionEnv struct {
	idp   *devidp.Server
	v     *Verifier
	now   time.Time
	calls atomic.Int64
	down  atomic.Bool
}

func newIntrospectionEnv(t *testing.T, mode IntrospectionMode, mod func(*Issuer)) *introspectionEnv {
	t.Helper()
	e := &introspectionEnv{now: t0}
	clock := func() time.Time { return e.now }
	idp, srv := devidptest.Start(t, devidp.Config{Now: clock, Clients: map[string]devidp.Client{
		"app": {Secret: "app-secret", Scopes: []string{"messages:read", "messages:write"}},
		"rs":  {Secret: "rs-secret"},
	}})
	e.idp = idp
	// A counting (and failing, when down) front of the dev issuer's endpoint.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		if e.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		r.URL.Path = "/oauth2/default/v1/introspect"
		idp.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	_ = srv
	client, err := introspect.New(introspect.Config{Endpoint: front.URL + "/introspect", Auth: introspect.ClientSecretBasic,
		ClientID: "rs", Secret: "rs-secret", CacheTTL: time.Minute, Now: clock})
	require.NoError(t, err)
	keys, err := jwks.New(jwks.Options{Issuer: idp.Issuer(), Algs: []string{"RS256"}, AllowHTTP: true})
	require.NoError(t, err)
	require.NoError(t, keys.Refresh(context.Background()))
	is := Issuer{URL: idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: keys,
		Introspection: &Introspection{Mode: mode, Client: client}}
	if mod != nil {
		mod(&is)
	}
	e.v, err = NewVerifier(VerifierConfig{Issuers: []Issuer{is}, Leeway: time.Minute, Now: clock})
	require.NoError(t, err)
	return e
}

func (e *introspectionEnv) opaque(t *testing.T, scopes ...string) string {
	t.Helper()
	tok, err := e.idp.MintOpaque(devidp.TokenRequest{ClientID: "app", Scopes: scopes})
	require.NoError(t, err)
	return tok
}

func (e *introspectionEnv) jwt(t *testing.T, scopes ...string) string {
	t.Helper()
	tok, err := e.idp.Mint(devidp.TokenRequest{ClientID: "app", Scopes: scopes})
	require.NoError(t, err)
	return tok
}

func TestOpaqueTokens(t *testing.T) {
	e := newIntrospectionEnv(t, IntrospectOpaque, nil)
	tok := e.opaque(t, "messages:read")
	c, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, "app", c.Subject)
	assert.Equal(t, "app", c.ClientID, "client_id names the client")
	assert.Equal(t, []string{"messages:read"}, c.Scopes, "scope, space-separated, feeds the scopes")
	assert.Equal(t, "default", c.IssuerName)
	assert.Contains(t, string(c.Raw), `"active":true`, "the claims forwarded are the issuer's answer")

	again, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Same(t, c, again, "a cached answer is decoded once")
	assert.Equal(t, int64(1), e.calls.Load())

	t.Run("revoked: refused once the cache lets go", func(t *testing.T) {
		e.idp.Revoke(tok)
		_, err := e.v.Verify(context.Background(), tok)
		assert.NoError(t, err, "within the cache TTL: the revocation window")
		e.now = e.now.Add(time.Minute)
		_, err = e.v.Verify(context.Background(), tok)
		assert.Equal(t, ErrTokenInactive, ReasonOf(err), "%v", err)
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := e.v.Verify(context.Background(), "dev_at_made-up")
		assert.Equal(t, ErrTokenInactive, ReasonOf(err))
	})
	t.Run("endpoint down: 503, never a 401", func(t *testing.T) {
		e.down.Store(true)
		defer e.down.Store(false)
		_, err := e.v.Verify(context.Background(), e.opaque(t, "messages:read"))
		assert.Equal(t, ErrIntrospectionUnavailable, ReasonOf(err), "%v", err)
	})
	t.Run("JWTs are still verified locally, not introspected", func(t *testing.T) {
		before := e.calls.Load()
		_, err := e.v.Verify(context.Background(), e.jwt(t, "messages:read"))
		require.NoError(t, err)
		assert.Equal(t, before, e.calls.Load())
	})
}

func TestOpaqueTokensWithoutIntrospectionAreMalformed(t *testing.T) {
	e := newIntrospectionEnv(t, IntrospectOff, nil)
	_, err := e.v.Verify(context.Background(), e.opaque(t, "messages:read"))
	assert.Equal(t, ErrMalformed, ReasonOf(err))
	assert.Zero(t, e.calls.Load(), "never sent anywhere")
}

func TestIntrospectAlways(t *testing.T) {
	e := newIntrospectionEnv(t, IntrospectAlways, nil)
	tok := e.jwt(t, "messages:read", "messages:write")
	c, err := e.v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, []string{"messages:read", "messages:write"}, c.Scopes)
	assert.Equal(t, int64(1), e.calls.Load())

	t.Run("a forged or expired JWT never reaches the issuer", func(t *testing.T) {
		before := e.calls.Load()
		_, err := e.v.Verify(context.Background(), tok[:len(tok)-4]+"AAAA")
		assert.Equal(t, ErrSignature, ReasonOf(err))
		expired, err := e.idp.Mint(devidp.TokenRequest{ClientID: "app", TTL: time.Minute, Scopes: []string{"messages:read"}})
		require.NoError(t, err)
		e.now = e.now.Add(3 * time.Minute)
		_, err = e.v.Verify(context.Background(), expired)
		assert.Equal(t, ErrExpired, ReasonOf(err))
		assert.Equal(t, before, e.calls.Load())
		e.now = t0
	})
	t.Run("revoked", func(t *testing.T) {
		e.idp.Revoke(tok)
		e.now = e.now.Add(time.Minute)
		c, err := e.v.Verify(context.Background(), tok)
		assert.Equal(t, ErrTokenInactive, ReasonOf(err), "%v", err)
		assert.NotNil(t, c, "the verified claims stay for the logs")
		e.now = t0
	})
	t.Run("the answer narrows the scopes, never widens them", func(t *testing.T) {
		signed, err := e.idp.Mint(devidp.TokenRequest{ClientID: "app", Scopes: []string{"messages:read", "messages:write"},
			Extra: map[string]any{"acr": "urn:okta:loa:2fa:any", "auth_time": t0.Add(-time.Minute).Unix()}})
		require.NoError(t, err)
		// The issuer now grants the token only messages:read: a narrower answer wins.
		narrow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, `{"active":true,"scope":"messages:read admin","iss":%q,"exp":%d}`, e.idp.Issuer(), t0.Add(time.Hour).Unix())
		}))
		defer narrow.Close()
		client, err := introspect.New(introspect.Config{Endpoint: narrow.URL, Auth: introspect.None})
		require.NoError(t, err)
		e.v.cfg.Issuers[0].Introspection.Client = client
		c, err := e.v.Verify(context.Background(), signed)
		require.NoError(t, err)
		assert.Equal(t, []string{"messages:read"}, c.Scopes, "admin is not in the token: not added")
		all, err := c.All()
		require.NoError(t, err)
		assert.Equal(t, []any{"messages:read"}, all["scp"], "claim rules, claim headers and x-authz-claims see the narrowed scopes")
		assert.Equal(t, "app", all["cid"], "the other claims stay as signed")
		assert.Equal(t, "urn:okta:loa:2fa:any", c.ACR, "step-up reads the narrowed token's acr")
		assert.Equal(t, t0.Add(-time.Minute).Unix(), c.AuthTime.Unix())
	})
}

// TestIntrospectionNarrowsAJWT: under always, the answer's scp alone narrows too, its cnf
// binds a bearer JWT, and a cnf naming another key than the JWT's refuses it.
func TestIntrospectionNarrowsAJWT(t *testing.T) {
	e := newIntrospectionEnv(t, IntrospectAlways, nil)
	answering := func(body string) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }))
		t.Cleanup(srv.Close)
		client, err := introspect.New(introspect.Config{Endpoint: srv.URL, Auth: introspect.None})
		require.NoError(t, err)
		e.v.cfg.Issuers[0].Introspection.Client = client
	}
	t.Run("scp alone", func(t *testing.T) {
		answering(`{"active":true,"scp":["messages:write"]}`)
		c, err := e.v.Verify(context.Background(), e.jwt(t, "messages:read", "messages:write"))
		require.NoError(t, err)
		assert.Equal(t, []string{"messages:write"}, c.Scopes)
	})
	t.Run("no scope member: nothing to narrow", func(t *testing.T) {
		answering(`{"active":true}`)
		c, err := e.v.Verify(context.Background(), e.jwt(t, "messages:read", "messages:write"))
		require.NoError(t, err)
		assert.Equal(t, []string{"messages:read", "messages:write"}, c.Scopes)
	})
	t.Run("the answer binds a bearer JWT", func(t *testing.T) {
		answering(`{"active":true,"token_type":"DPoP","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}`)
		c, err := e.v.Verify(context.Background(), e.jwt(t, "messages:read"))
		require.NoError(t, err)
		require.NotNil(t, c.Cnf, "a bound token must prove its key")
		assert.Equal(t, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", c.Cnf.JKT)
		all, err := c.All()
		require.NoError(t, err)
		assert.Contains(t, all, "cnf")
	})
	t.Run("another key than the JWT's", func(t *testing.T) {
		answering(`{"active":true,"cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}`)
		bound, err := e.idp.Mint(devidp.TokenRequest{ClientID: "app", Scopes: []string{"messages:read"},
			Extra: map[string]any{"cnf": map[string]any{"jkt": "another-thumbprint-aaaaaaaaaaaaaaaaaaaaaaaaaa"}}})
		require.NoError(t, err)
		_, err = e.v.Verify(context.Background(), bound)
		assert.Equal(t, ErrAmbiguousClaims, ReasonOf(err), "%v", err)
	})
}

// TestMalformedAnswerIsAskedAgain: an active answer with a malformed member is 503 and is not
// served from the cache for its TTL: the next request asks again.
func TestMalformedAnswerIsAskedAgain(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			_, _ = w.Write([]byte(`{"active":true,"iat":"yesterday"}`))
			return
		}
		_, _ = w.Write([]byte(`{"active":true}`))
	}))
	defer srv.Close()
	client, err := introspect.New(introspect.Config{Endpoint: srv.URL, Auth: introspect.None, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{{URL: "ISS", Audiences: []string{"api://default"}, Algs: []string{"RS256"},
		Keys: staticKeys{}, Introspection: &Introspection{Mode: IntrospectOpaque, Client: client}}}, Now: func() time.Time { return t0 },
		CacheSize: -1})
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), "opaque-token")
	assert.Equal(t, ErrIntrospectionUnavailable, ReasonOf(err))
	_, err = v.Verify(context.Background(), "opaque-token")
	assert.NoError(t, err)
	assert.Equal(t, int64(2), calls.Load())
}

// TestIntrospectionAnswersAreHeldToTheRules: an active answer whose members break the rules a
// JWT is held to is refused.
func TestIntrospectionAnswersAreHeldToTheRules(t *testing.T) {
	exp := t0.Add(time.Hour).Unix()
	for _, tc := range []struct {
		name, body string
		want       *Reason
		clientIDs  []string
	}{
		{"minimal", `{"active":true}`, nil, nil},
		{"full", fmt.Sprintf(`{"active":true,"iss":"ISS","aud":["api://default"],"exp":%d,"client_id":"c","scope":"a"}`, exp), nil, []string{"c"}},
		{"another issuer", `{"active":true,"iss":"https://evil.example"}`, ErrIssuer, nil},
		{"another audience", `{"active":true,"aud":"api://other"}`, ErrAudience, nil},
		{"expired", fmt.Sprintf(`{"active":true,"exp":%d}`, t0.Add(-time.Hour).Unix()), ErrExpired, nil},
		{"not yet valid", fmt.Sprintf(`{"active":true,"nbf":%d}`, t0.Add(time.Hour).Unix()), ErrNotYetValid, nil},
		{"client not allowed", `{"active":true,"client_id":"other"}`, ErrClientID, []string{"c"}},
		{"no client, an allow-list", `{"active":true}`, ErrClientID, []string{"c"}},
		{"a refresh token", `{"active":true,"token_type":"refresh_token"}`, ErrNotAccessToken, nil},
		{"Hydra's refresh token", `{"active":true,"token_type":"Bearer","token_use":"refresh_token"}`, ErrNotAccessToken, nil},
		{"an ID token, as a URI", `{"active":true,"token_type":"urn:ietf:params:oauth:token-type:id_token"}`, ErrNotAccessToken, nil},
		// An answer whose members are not what they must be is the endpoint failing to answer:
		// 503, not a 401 that calls the client's token bad.
		{"a case variant of a registered claim", `{"active":true,"Sub":"admin"}`, ErrIntrospectionUnavailable, nil},
		{"iat a string", `{"active":true,"iat":"yesterday"}`, ErrIntrospectionUnavailable, nil},
		{"sub a number", `{"active":true,"sub":42}`, ErrIntrospectionUnavailable, nil},
		{"scope a list", `{"active":true,"scope":["a"]}`, ErrIntrospectionUnavailable, nil},
		{"cid and client_id disagree", `{"active":true,"cid":"a","client_id":"b"}`, ErrIntrospectionUnavailable, nil},
		{"token_type a list", `{"active":true,"token_type":["refresh_token"]}`, ErrIntrospectionUnavailable, nil},
		{"token_use a number", `{"active":true,"token_use":1}`, ErrIntrospectionUnavailable, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tc.body)) }))
			defer srv.Close()
			client, err := introspect.New(introspect.Config{Endpoint: srv.URL, Auth: introspect.None})
			require.NoError(t, err)
			v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{{URL: "ISS", Audiences: []string{"api://default"}, Algs: []string{"RS256"},
				ClientIDs: tc.clientIDs, Keys: staticKeys{}, Introspection: &Introspection{Mode: IntrospectOpaque, Client: client}}},
				Now: func() time.Time { return t0 }})
			require.NoError(t, err)
			_, err = v.Verify(context.Background(), "opaque-token")
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.Equal(t, tc.want, ReasonOf(err), "%v", err)
		})
	}
}

func TestIntrospectionConfig(t *testing.T) {
	client, err := introspect.New(introspect.Config{Endpoint: "https://x.example/introspect", Auth: introspect.None})
	require.NoError(t, err)
	issuer := func(url string, mode IntrospectionMode, c *introspect.Client) Issuer {
		return Issuer{Name: url, URL: url, Audiences: []string{"a"}, Algs: []string{"RS256"}, Keys: staticKeys{},
			Introspection: &Introspection{Mode: mode, Client: c}}
	}
	_, err = NewVerifier(VerifierConfig{Issuers: []Issuer{issuer("https://a.example", IntrospectOpaque, client),
		issuer("https://b.example", IntrospectAlways, client)}})
	assert.ErrorContains(t, err, "more than one issuer introspects opaque tokens")
	_, err = NewVerifier(VerifierConfig{Issuers: []Issuer{issuer("https://a.example", IntrospectOpaque, nil)}})
	assert.ErrorContains(t, err, "needs an introspection client")
	_, err = NewVerifier(VerifierConfig{Issuers: []Issuer{issuer("https://a.example", "sometimes", client)}})
	assert.ErrorContains(t, err, "is not off, opaque or always")
	_, err = NewVerifier(VerifierConfig{Issuers: []Issuer{issuer("https://a.example", IntrospectAlways, client),
		issuer("https://b.example", IntrospectOff, nil)}})
	assert.NoError(t, err)
}

// FuzzIntrospectedClaims: whatever an endpoint answers, the verifier refuses it or returns
// claims that hold to the rules; never a panic.
func FuzzIntrospectedClaims(f *testing.F) {
	for _, s := range []string{`{"active":true,"scope":"a b","exp":1900000000,"aud":["api://default"]}`, `{"active":true,"Active":false}`,
		`{"active":true,"cnf":{"jkt":"x"}}`, `{"active":true,"scope":7}`, `{"active":true,"exp":"x"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }))
		defer srv.Close()
		client, err := introspect.New(introspect.Config{Endpoint: srv.URL, Auth: introspect.None, CacheTTL: -1, NegativeTTL: -1})
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewVerifier(VerifierConfig{Issuers: []Issuer{{URL: "ISS", Audiences: []string{"api://default"}, Algs: []string{"RS256"},
			Keys: staticKeys{}, Introspection: &Introspection{Mode: IntrospectOpaque, Client: client}}}, Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(context.Background(), "opaque-token")
		if err != nil {
			return
		}
		if c.Issuer != "" && c.Issuer != "ISS" {
			t.Fatalf("accepted issuer %q", c.Issuer)
		}
		if !c.Expiry.IsZero() && !t0.Before(c.Expiry.Add(v.cfg.Leeway)) {
			t.Fatalf("accepted an expired answer: %s", body)
		}
	})
}
