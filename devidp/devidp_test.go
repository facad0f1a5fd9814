package devidp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

func claimsOf(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	var hdr, claims map[string]any
	for i, dst := range []*map[string]any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, dst))
	}
	return hdr, claims
}

func TestTokenEndpointIssuesOktaShapedTokens(t *testing.T) {
	idp, srv := devidptest.Start(t, devidp.Config{})
	tok, err := devidp.RequestToken(context.Background(), srv.Client(), idp.Issuer(), "test-client", "test-secret", "messages:read")
	require.NoError(t, err)
	hdr, c := claimsOf(t, tok)
	assert.Equal(t, "RS256", hdr["alg"])
	assert.Equal(t, idp.CurrentKID(), hdr["kid"])
	for _, name := range []string{"ver", "jti", "iss", "aud", "iat", "exp", "cid", "scp", "sub"} {
		assert.Contains(t, c, name)
	}
	assert.Equal(t, idp.Issuer(), c["iss"])
	assert.Equal(t, "api://default", c["aud"])
	assert.Equal(t, []any{"messages:read"}, c["scp"], "scp is a JSON array, as Okta's")
	assert.True(t, strings.HasPrefix(c["jti"].(string), "AT."))
}

func TestTokenEndpointErrors(t *testing.T) {
	idp, srv := devidptest.Start(t, devidp.Config{})
	post := func(form url.Values, basic [2]string) (*http.Response, map[string]any) {
		req, err := http.NewRequest("POST", idp.Issuer()+"/v1/token", strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic[0] != "" {
			req.SetBasicAuth(basic[0], basic[1])
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp, body
	}
	cc := url.Values{"grant_type": {"client_credentials"}}

	resp, body := post(cc, [2]string{"test-client", "wrong"})
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, "invalid_client", body["error"])
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic")

	resp, body = post(url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, [2]string{"test-client", "test-secret"})
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "invalid_scope", body["error"])

	resp, body = post(url.Values{"grant_type": {"password"}}, [2]string{"test-client", "test-secret"})
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "unsupported_grant_type", body["error"])

	// client_secret_post, no scope: the client's scopes are granted.
	resp, body = post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"test-client"}, "client_secret": {"test-secret"}}, [2]string{})
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "messages:read messages:write", body["scope"])
	assert.Equal(t, "Bearer", body["token_type"])
}

func TestMetadataAndRotation(t *testing.T) {
	idp, srv := devidptest.Start(t, devidp.Config{})
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, err := srv.Client().Get(idp.Issuer() + p)
		require.NoError(t, err)
		var md map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&md))
		resp.Body.Close()
		assert.Equal(t, idp.Issuer(), md["issuer"])
		assert.Equal(t, idp.Issuer()+"/v1/keys", md["jwks_uri"])
	}
	kids := func() []string {
		resp, err := srv.Client().Get(idp.Issuer() + "/v1/keys")
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Contains(t, resp.Header.Get("Cache-Control"), "max-age=")
		var set struct{ Keys []map[string]any }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&set))
		var out []string
		for _, k := range set.Keys {
			assert.NotContains(t, k, "d", "never publish a private key")
			out = append(out, k["kid"].(string))
		}
		return out
	}
	first := idp.CurrentKID()
	assert.Equal(t, []string{first}, kids())
	second, err := idp.Rotate()
	require.NoError(t, err)
	assert.Equal(t, []string{second, first}, kids(), "the previous key stays published")
	third, err := idp.Rotate()
	require.NoError(t, err)
	assert.Equal(t, []string{third, second}, kids(), "older keys are dropped")
}

func TestNewRejectsBadIssuer(t *testing.T) {
	for _, iss := range []string{"", "ftp://x", "http://x/oauth2/default/"} {
		_, err := devidp.New(devidp.Config{Issuer: iss})
		assert.Error(t, err, iss)
	}
}

// TestTokenEndpointBindsToADPoPKey: a token request with a valid proof gets a DPoP-bound
// token (cnf.jkt = the key's thumbprint), as from an Okta app that requires DPoP; a bad or
// replayed proof gets invalid_dpop_proof.
func TestTokenEndpointBindsToADPoPKey(t *testing.T) {
	idp, srv := devidptest.Start(t, devidp.Config{})
	key, err := devidp.NewProofKey()
	require.NoError(t, err)
	jkt, err := devidp.Thumbprint(key)
	require.NoError(t, err)
	tok, err := devidp.RequestDPoPToken(context.Background(), srv.Client(), idp.Issuer(), "test-client", "test-secret", "messages:read", key)
	require.NoError(t, err)
	_, c := claimsOf(t, tok)
	assert.Equal(t, map[string]any{"jkt": jkt}, c["cnf"])

	post := func(proof string) (int, map[string]any) {
		req, err := http.NewRequest("POST", idp.Issuer()+"/v1/token", strings.NewReader("grant_type=client_credentials"))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("test-client", "test-secret")
		req.Header.Set("DPoP", proof)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp.StatusCode, body
	}
	proof, err := devidp.Proof(key, "POST", idp.Issuer()+"/v1/token", "", time.Now())
	require.NoError(t, err)
	status, body := post(proof)
	require.Equal(t, 200, status, "%v", body)
	assert.Equal(t, "DPoP", body["token_type"])
	status, body = post(proof)
	assert.Equal(t, 400, status)
	assert.Equal(t, "invalid_dpop_proof", body["error"], "a replayed proof")
	wrong, err := devidp.Proof(key, "GET", idp.Issuer()+"/v1/token", "", time.Now())
	require.NoError(t, err)
	status, body = post(wrong)
	assert.Equal(t, 400, status)
	assert.Equal(t, "invalid_dpop_proof", body["error"], "a proof for another method")
}

func TestLoadProofKeyCreatesOnce(t *testing.T) {
	path := t.TempDir() + "/key.jwk"
	k1, created, err := devidp.LoadProofKey(path)
	require.NoError(t, err)
	assert.True(t, created)
	k2, created, err := devidp.LoadProofKey(path)
	require.NoError(t, err)
	assert.False(t, created)
	t1, _ := devidp.Thumbprint(k1)
	t2, _ := devidp.Thumbprint(k2)
	assert.Equal(t, t1, t2, "the same key is read back")
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "a private key file is private")
}

func TestIssuerFor(t *testing.T) {
	for addr, want := range map[string]string{
		"localhost:9400": "http://localhost:9400/oauth2/default", ":9400": "http://localhost:9400/oauth2/default",
		"127.0.0.1:9400": "http://localhost:9400/oauth2/default", "0.0.0.0:9401": "http://localhost:9401/oauth2/default",
		"[::1]:9400": "http://localhost:9400/oauth2/default", "devidp:9400": "http://devidp:9400/oauth2/default",
	} {
		assert.Equal(t, want, devidp.IssuerFor(addr), addr)
	}
}

// TestSigningKeyFileKeepsTokensValid: a key file makes an issuer that signs with the same key
// and kid after a restart, so that yesterday's token still verifies.
func TestSigningKeyFileKeepsTokensValid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	key, created, err := devidp.LoadSigningKey(path)
	require.NoError(t, err)
	require.True(t, created)
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "a private key is not world-readable")

	first, err := devidp.New(devidp.Config{Issuer: "http://localhost:9400/oauth2/default", SigningKey: key})
	require.NoError(t, err)
	again, created, err := devidp.LoadSigningKey(path)
	require.NoError(t, err)
	assert.False(t, created)
	second, err := devidp.New(devidp.Config{Issuer: "http://localhost:9400/oauth2/default", SigningKey: again})
	require.NoError(t, err)
	assert.Equal(t, first.CurrentKID(), second.CurrentKID())
	ks1, err := first.KeySet()
	require.NoError(t, err)
	ks2, err := second.KeySet()
	require.NoError(t, err)
	assert.JSONEq(t, string(ks1), string(ks2), "the same published key")

	require.NoError(t, os.WriteFile(path, []byte("not a key"), 0o600))
	_, _, err = devidp.LoadSigningKey(path)
	assert.ErrorContains(t, err, "is not PEM")
}

// TestTokenEndpointStandsForASignIn: acr and auth_time (devidp token --acr, --auth-time) land
// in the token as Okta puts them after a user's sign-in; a token without them has neither.
func TestTokenEndpointStandsForASignIn(t *testing.T) {
	idp, srv := devidptest.Start(t, devidp.Config{})
	at := time.Unix(1796069938, 0)
	tok, err := devidp.RequestTokenWith(context.Background(), srv.Client(), idp.Issuer(), "test-client", "test-secret",
		devidp.TokenOptions{Scope: "messages:read", ACR: "urn:okta:loa:2fa:any", AuthTime: at})
	require.NoError(t, err)
	_, c := claimsOf(t, tok)
	assert.Equal(t, "urn:okta:loa:2fa:any", c["acr"])
	assert.Equal(t, float64(at.Unix()), c["auth_time"])

	tok, err = devidp.RequestToken(context.Background(), srv.Client(), idp.Issuer(), "test-client", "test-secret", "messages:read")
	require.NoError(t, err)
	_, c = claimsOf(t, tok)
	assert.NotContains(t, c, "acr")
	assert.NotContains(t, c, "auth_time")

	resp, err := srv.Client().PostForm(idp.Issuer()+"/v1/token?", map[string][]string{
		"grant_type": {"client_credentials"}, "client_id": {"test-client"}, "client_secret": {"test-secret"}, "auth_time": {"yesterday"}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
