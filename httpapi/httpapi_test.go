package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHTTPRequestShapes(t *testing.T) {
	nginx := map[string]string{"X-Original-URI": "/api/messages?x=1", "X-Original-Method": "PUT", "X-Original-Host": "api.example"}
	traefik := map[string]string{"X-Forwarded-Method": "PATCH", "X-Forwarded-Proto": "https",
		"X-Forwarded-Host": "api.example", "X-Forwarded-Uri": "/secure"}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name       string
		opts       Options
		method     string
		target     string
		headers    map[string]string
		wantMethod string
		wantHost   string
		wantPath   string
		wantBad    string // a substring of the reason the request is refused
	}{
		{
			name: "envoy http_service", opts: Options{PathPrefix: "/authz"}, method: "POST", target: "/authz/api/messages?page=2",
			wantMethod: "POST", wantHost: "api.example", wantPath: "/api/messages?page=2",
		},
		{
			name: "envoy keeps the raw target", opts: Options{PathPrefix: "/authz"}, method: "GET", target: "/authz/api/%6Dessages",
			wantMethod: "GET", wantHost: "api.example", wantPath: "/api/%6Dessages",
		},
		{
			name: "envoy http_service without prefix", opts: Options{Source: SourceEnvoy}, method: "DELETE", target: "/secure",
			wantMethod: "DELETE", wantHost: "api.example", wantPath: "/secure",
		},
		{
			name: "envoy prefix is not a partial segment", opts: Options{PathPrefix: "/authz"}, method: "GET", target: "/authzfoo",
			wantBad: "does not start with the http path prefix",
		},
		{
			name: "envoy: a client's X-Original-URI is refused", opts: Options{Source: SourceEnvoy}, method: "GET", target: "/secure",
			headers: map[string]string{"X-Original-URI": "/healthz"}, wantBad: "source is Envoy",
		},
		{
			name: "nginx auth_request", method: "GET", target: "/auth", headers: nginx,
			wantMethod: "PUT", wantHost: "api.example", wantPath: "/api/messages?x=1",
		},
		{
			name: "nginx, configured", opts: Options{Source: SourceNginx}, method: "GET", target: "/auth", headers: nginx,
			wantMethod: "PUT", wantHost: "api.example", wantPath: "/api/messages?x=1",
		},
		{
			name: "nginx without X-Original-Host", opts: Options{Source: SourceNginx}, method: "GET", target: "/auth",
			headers: map[string]string{"X-Original-URI": "/x", "X-Original-Method": "GET"}, wantBad: "X-Original-Host is missing",
		},
		{
			name: "nginx: Traefik's headers too", opts: Options{Source: SourceNginx}, method: "GET", target: "/auth",
			headers: merge(nginx, map[string]string{"X-Forwarded-Uri": "/healthz"}), wantBad: "source is nginx",
		},
		{
			name: "traefik forwardauth", method: "GET", target: "/", headers: traefik,
			wantMethod: "PATCH", wantHost: "api.example", wantPath: "/secure",
		},
		{
			name: "traefik: a client's X-Original-URI is refused", opts: Options{Source: SourceTraefik}, method: "GET", target: "/",
			headers: merge(traefik, map[string]string{"X-Original-URI": "/healthz"}), wantBad: "source is Traefik",
		},
		{
			name: "auto: both sets", method: "GET", target: "/", headers: merge(nginx, traefik), wantBad: "both nginx's",
		},
		{
			name: "auto: neither set, no prefix", method: "GET", target: "/api/messages", wantBad: "no request headers",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, nil)
			req.Host = "api.example"
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			req.Header.Set("Authorization", "Bearer abc")
			r, _, _ := New(authz.NewAuthorizer(nil, authz.Options{}), tt.opts).requestFromHTTP(req)
			if tt.wantBad != "" {
				assert.Equal(t, ErrRequestSource, r.Invalid)
				assert.Contains(t, r.InvalidDetail, tt.wantBad)
				return
			}
			assert.Nil(t, r.Invalid, r.InvalidDetail)
			assert.Equal(t, tt.wantMethod, r.Method)
			assert.Equal(t, tt.wantHost, r.Host)
			assert.Equal(t, tt.wantPath, r.Path)
			assert.Equal(t, []string{"Bearer abc"}, r.Authorization)
		})
	}
}

func TestHTTPRepeatedOriginalURIIsRefused(t *testing.T) {
	req := httptest.NewRequest("GET", "/auth", nil)
	req.Header.Add("X-Original-URI", "/healthz")
	req.Header.Add("X-Original-URI", "/api/messages")
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-Host", "api")
	r, _, _ := New(authz.NewAuthorizer(nil, authz.Options{}), Options{}).requestFromHTTP(req)
	assert.Equal(t, ErrRequestSource, r.Invalid)
	assert.Contains(t, r.InvalidDetail, "repeated")
}

func TestHTTPDecisions(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(New(e.az, Options{Source: SourceEnvoy}))
	defer srv.Close()
	do := func(headers map[string]string) *http.Response {
		req, err := http.NewRequest("GET", srv.URL+"/api/messages", nil)
		require.NoError(t, err)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	t.Run("allow", func(t *testing.T) {
		resp := do(map[string]string{"Authorization": "Bearer " + e.mint(t, nil), "X-Authz-User-Id": "spoofed"})
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "test-client", resp.Header.Get(policy.HeaderSubject))
		assert.Equal(t, "messages:read", resp.Header.Get(policy.HeaderScopes))
		assert.NotEmpty(t, resp.Header.Get(policy.HeaderClaims))
		assert.Empty(t, resp.Header.Get(policy.HeaderUserID), "a spoofed identity header is never echoed")
		assert.Equal(t, "x-authz-user-id,authorization,dpop", resp.Header.Get(envoyHeadersToRemove), "client identity copies, and the credentials (not forwarded by default)")
	})
	t.Run("no token", func(t *testing.T) {
		resp := do(nil)
		assert.Equal(t, 401, resp.StatusCode)
		assert.Equal(t, `Bearer realm="api"`, resp.Header.Get("WWW-Authenticate"))
	})
	t.Run("expired", func(t *testing.T) {
		resp := do(map[string]string{"Authorization": "Bearer " + e.mint(t, map[string]any{"exp": t0.Unix() - 3600})})
		assert.Equal(t, 401, resp.StatusCode)
		assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
		var body map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		assert.Equal(t, "invalid_token", body["error"])
		assert.Equal(t, "The access token expired", body["error_description"])
		assert.Empty(t, resp.Header.Get(policy.HeaderSubject))
	})
}
