package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/platformauth/envoy-okta-authz/internal/authztest"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/internal/tracing/tracingtest"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHTTPCheckContinuesTheCallersTrace(t *testing.T) {
	exp := tracingtest.Install(t)
	e := newEnv(t, nil)
	req := httptest.NewRequest("GET", "/api/messages", nil)
	req.Header.Set("traceparent", tracingtest.Traceparent)
	rec := httptest.NewRecorder()
	New(e.az, Options{Source: SourceEnvoy}).ServeHTTP(rec, req)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	assert.Equal(t, tracingtest.CallerTrace, spans[0].SpanContext.TraceID().String())
	assert.Equal(t, tracingtest.CallerSpan, spans[0].Parent.SpanID().String())
}

func TestMissingRequestSourceIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(New(e.az, Options{Source: SourceNginx}))
	defer srv.Close()
	// nginx.conf without X-Original-URI: the subrequest's own path must not be judged.
	req, err := http.NewRequest("GET", srv.URL+"/_authz", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.mint(t, nil))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "The proxy did not say which request to authorize")
}

// TestDPoPOverHTTP: the proof and the client certificate come from the headers nginx sets, the
// scheme of the htu from X-Forwarded-Proto.
func TestDPoPOverHTTP(t *testing.T) {
	e := newEnv(t, &authztest.Options{DPoP: true})
	bound := e.mint(t, map[string]any{"cnf": map[string]string{"jkt": e.JKT}})
	cert, x5t := tokentest.ClientCert(t)
	certBound := e.mint(t, map[string]any{"cnf": map[string]string{"x5t#S256": x5t}})
	srv := httptest.NewServer(New(e.az, Options{Source: SourceNginx, ClientCertHeader: "X-Client-Cert"}))
	defer srv.Close()
	do := func(h map[string]string) *http.Response {
		req, err := http.NewRequest("GET", srv.URL+"/_authz", nil)
		require.NoError(t, err)
		for k, v := range map[string]string{"X-Original-URI": "/api/messages?x=1", "X-Original-Method": "GET",
			"X-Original-Host": "api.example", "X-Forwarded-Proto": "http"} {
			req.Header.Set(k, v)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	assert.Equal(t, 200, do(map[string]string{"Authorization": "DPoP " + bound, "DPoP": e.Proof(t, "GET", "http://api.example/api/messages", bound)}).StatusCode)
	resp := do(map[string]string{"Authorization": "DPoP " + bound, "DPoP": e.Proof(t, "GET", "https://api.example/api/messages", bound)})
	assert.Equal(t, 401, resp.StatusCode, "the proof names https, the client used http")
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`)
	assert.Equal(t, 200, do(map[string]string{"Authorization": "Bearer " + certBound, "X-Client-Cert": cert}).StatusCode)
	assert.Equal(t, 401, do(map[string]string{"Authorization": "Bearer " + certBound}).StatusCode)
}

// TestSpoofedClaimHeadersAreRemoved: a client's copy of a configured claim header is named in
// x-envoy-auth-headers-to-remove when the token has no such claim, and overwritten when it has.
func TestSpoofedClaimHeadersAreRemoved(t *testing.T) {
	e := newEnv(t, &authztest.Options{Policy: "identity:\n  claims:\n    - { header: x-user-email, claim: email }\n    - { header: x-user-groups, claim: groups }\n"})
	withEmail := e.mint(t, map[string]any{"email": "ada@example.com"})
	srv := httptest.NewServer(New(e.az, Options{Source: SourceEnvoy}))
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL+"/api/messages", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+withEmail)
	req.Header.Set("X-User-Groups", "admins")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "ada@example.com", resp.Header.Get("X-User-Email"))
	assert.Contains(t, resp.Header.Get(envoyHeadersToRemove), "x-user-groups")
}

func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(New(e.az, Options{Source: SourceEnvoy}))
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL+"/api/messages", nil)
	require.NoError(t, err)
	req.Header.Add("Authorization", "Basic dXNlcjpwYXNz")
	req.Header.Add("Authorization", "Bearer "+e.mint(t, nil))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`)
	assert.Empty(t, resp.Header.Get(policy.HeaderSubject))
}

func TestRefusedPath(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(New(e.az, Options{Source: SourceNginx}))
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL+"/_authz", nil)
	require.NoError(t, err)
	req.Header.Set("X-Original-URI", "/public/..%2Fsecure")
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-Host", "api")
	req.Header.Set("Authorization", "Bearer "+e.mint(t, nil))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	assert.Empty(t, resp.Header.Get(policy.HeaderSubject))
}
