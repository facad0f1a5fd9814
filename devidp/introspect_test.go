package devidp_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

// form posts a form to url with optional basic credentials and returns the status and JSON.
func form(t *testing.T, c *http.Client, u string, f url.Values, basic ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(f.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// assertion signs an RFC 7523 client assertion.
func assertion(t *testing.T, alg jwa.SignatureAlgorithm, key any, client, aud string, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Issuer(client).Subject(client).Audience([]string{aud}).
		JwtID(time.Now().String()).Expiration(exp).Build()
	require.NoError(t, err)
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	require.NoError(t, err)
	return string(signed)
}

func TestIntrospectionAndRevocation(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	idp, srv := devidptest.Start(t, devidp.Config{Clients: map[string]devidp.Client{
		"app":       {Secret: "app-secret", Scopes: []string{"messages:read"}},
		"org-app":   {Secret: "org-secret", Scopes: []string{"messages:read"}, Opaque: true},
		"rs":        {Secret: "rs-secret"},
		"rs-jwt":    {AssertionKey: &ecKey.PublicKey},
		"rs-public": {Public: true},
		"rs:1":      {Secret: "s&ecret"},
	}})
	c := srv.Client()
	introspect := idp.Issuer() + "/v1/introspect"

	jwtTok, err := devidp.RequestToken(t.Context(), c, idp.Issuer(), "app", "app-secret", "messages:read")
	require.NoError(t, err)
	opaque, err := devidp.RequestToken(t.Context(), c, idp.Issuer(), "org-app", "org-secret", "messages:read")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(opaque, "dev_at_"), "an opaque token: %s", opaque)
	assert.NotContains(t, opaque, ".", "not a JWS")

	t.Run("every client authentication", func(t *testing.T) {
		for name, auth := range map[string]func(url.Values) []string{
			"client_secret_basic": func(url.Values) []string { return []string{"rs", "rs-secret"} },
			"client_secret_post": func(f url.Values) []string {
				f.Set("client_id", "rs")
				f.Set("client_secret", "rs-secret")
				return nil
			},
			"client_secret_jwt": func(f url.Values) []string {
				f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
				f.Set("client_assertion", assertion(t, jwa.HS256(), []byte("rs-secret"), "rs", introspect, time.Now().Add(time.Minute)))
				return nil
			},
			"private_key_jwt": func(f url.Values) []string {
				f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
				f.Set("client_assertion", assertion(t, jwa.ES256(), ecKey, "rs-jwt", introspect, time.Now().Add(time.Minute)))
				return nil
			},
			"none": func(f url.Values) []string { f.Set("client_id", "rs-public"); return nil },
		} {
			for _, tok := range []string{jwtTok, opaque} {
				f := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
				status, body := form(t, c, introspect, f, auth(f)...)
				require.Equal(t, 200, status, "%s: %v", name, body)
				assert.Equal(t, true, body["active"], name)
				assert.Equal(t, "messages:read", body["scope"], name)
				assert.Contains(t, []any{"app", "org-app"}, body["client_id"], name)
				for _, m := range []string{"exp", "iat", "sub", "aud", "iss", "jti", "token_type"} {
					assert.Contains(t, body, m, "%s: member %s", name, m)
				}
			}
		}
	})

	t.Run("refused client authentication", func(t *testing.T) {
		f := url.Values{"token": {jwtTok}}
		status, _ := form(t, c, introspect, f, "rs", "wrong")
		assert.Equal(t, 401, status)
		status, _ = form(t, c, introspect, url.Values{"token": {jwtTok}, "client_id": {"rs"}})
		assert.Equal(t, 401, status, "a confidential client cannot skip its secret")
		wrongAud := url.Values{"token": {jwtTok}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion": {assertion(t, jwa.ES256(), ecKey, "rs-jwt", idp.Issuer()+"/v1/token", time.Now().Add(time.Minute))}}
		status, _ = form(t, c, introspect, wrongAud)
		assert.Equal(t, 401, status, "Okta wants the assertion's aud to be the introspection URL")
		a := assertion(t, jwa.ES256(), ecKey, "rs-jwt", introspect, time.Now().Add(time.Minute))
		once := url.Values{"token": {jwtTok}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
		status, _ = form(t, c, introspect, once)
		assert.Equal(t, 200, status)
		status, _ = form(t, c, introspect, once)
		assert.Equal(t, 401, status, "an assertion is used once")
		long := url.Values{"token": {jwtTok}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion": {assertion(t, jwa.ES256(), ecKey, "rs-jwt", introspect, time.Now().Add(time.Hour))}}
		status, _ = form(t, c, introspect, long)
		assert.Equal(t, 401, status, "an assertion valid for an hour")
	})

	t.Run("Basic credentials are form-encoded first", func(t *testing.T) {
		status, _ := form(t, c, introspect, url.Values{"token": {jwtTok}}, "rs%3A1", "s%26ecret")
		assert.Equal(t, 200, status, "RFC 6749 §2.3.1")
		status, _ = form(t, c, introspect, url.Values{"token": {jwtTok}}, "rs:1", "s&ecret")
		assert.Equal(t, 401, status, "a colon in a raw client id splits it")
	})

	t.Run("inactive", func(t *testing.T) {
		for name, tok := range map[string]string{"garbage": "nope", "forged opaque": "dev_at_00", "tampered JWT": jwtTok[:len(jwtTok)-4] + "AAAA"} {
			_, body := form(t, c, introspect, url.Values{"token": {tok}}, "rs", "rs-secret")
			assert.Equal(t, map[string]any{"active": false}, body, name)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		for _, tok := range []string{jwtTok, opaque} {
			status, _ := form(t, c, idp.Issuer()+"/v1/revoke", url.Values{"token": {tok}}, "app", "app-secret")
			assert.Equal(t, 200, status)
			_, body := form(t, c, introspect, url.Values{"token": {tok}}, "rs", "rs-secret")
			assert.Equal(t, map[string]any{"active": false}, body, "revoked")
		}
		status, _ := form(t, c, idp.Issuer()+"/v1/revoke", url.Values{"token": {"unknown"}}, "app", "app-secret")
		assert.Equal(t, 200, status, "RFC 7009: an unknown token is no error")
		status, _ = form(t, c, idp.Issuer()+"/v1/revoke", url.Values{"token": {"unknown"}})
		assert.Equal(t, 401, status, "revocation needs client authentication")
	})

	t.Run("metadata names the endpoints", func(t *testing.T) {
		resp, err := c.Get(idp.Issuer() + "/.well-known/oauth-authorization-server")
		require.NoError(t, err)
		defer resp.Body.Close()
		var md map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&md))
		assert.Equal(t, introspect, md["introspection_endpoint"])
		assert.Equal(t, idp.Issuer()+"/v1/revoke", md["revocation_endpoint"])
	})
}

func TestOpaqueTokensExpire(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	idp, err := devidp.New(devidp.Config{Issuer: "http://idp.example/oauth2/default", Now: func() time.Time { return now },
		Clients: map[string]devidp.Client{"c": {Secret: "s"}}})
	require.NoError(t, err)
	tok, err := idp.MintOpaque(devidp.TokenRequest{ClientID: "c", Scopes: []string{"a"}, TTL: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, true, idp.Introspect(tok)["active"])
	now = now.Add(time.Minute)
	assert.Equal(t, map[string]any{"active": false}, idp.Introspect(tok))
}
