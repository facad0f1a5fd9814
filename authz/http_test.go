package authz

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHTTPRequestShapes(t *testing.T) {
	tests := []struct {
		name       string
		prefix     string
		method     string
		target     string
		headers    map[string]string
		wantMethod string
		wantHost   string
		wantPath   string
	}{
		{
			name: "envoy http_service", prefix: "/authz", method: "POST", target: "/authz/api/messages?page=2",
			headers:    map[string]string{"Host": "api.example"},
			wantMethod: "POST", wantHost: "api.example", wantPath: "/api/messages?page=2",
		},
		{
			name: "envoy http_service without prefix", method: "DELETE", target: "/secure",
			wantMethod: "DELETE", wantHost: "authz:9002", wantPath: "/secure",
		},
		{
			name: "envoy prefix is not a partial segment", prefix: "/authz", method: "GET", target: "/authzfoo",
			wantMethod: "GET", wantHost: "authz:9002", wantPath: "/authzfoo",
		},
		{
			name: "nginx auth_request", method: "GET", target: "/auth",
			headers:    map[string]string{"X-Original-URI": "/api/messages?x=1", "X-Original-Method": "PUT", "X-Original-Host": "api.example"},
			wantMethod: "PUT", wantHost: "api.example", wantPath: "/api/messages?x=1",
		},
		{
			name: "traefik forwardauth", method: "GET", target: "/",
			headers: map[string]string{"X-Forwarded-Method": "PATCH", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": "api.example", "X-Forwarded-Uri": "/secure"},
			wantMethod: "PATCH", wantHost: "api.example", wantPath: "/secure",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://authz:9002"+tt.target, nil)
			for k, v := range tt.headers {
				if k == "Host" {
					req.Host = v
					continue
				}
				req.Header.Set(k, v)
			}
			req.Header.Set("Authorization", "Bearer abc")
			r, _ := NewHTTPServer(nil, tt.prefix).requestFromHTTP(req)
			assert.Equal(t, tt.wantMethod, r.Method)
			assert.Equal(t, tt.wantHost, r.Host)
			assert.Equal(t, tt.wantPath, r.Path)
			assert.Equal(t, []string{"Bearer abc"}, r.Authorization)
		})
	}
}

func TestHTTPDecisions(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(NewHTTPServer(e.az, ""))
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
		assert.Equal(t, "test-client", resp.Header.Get(HeaderSubject))
		assert.Equal(t, "messages:read", resp.Header.Get(HeaderScopes))
		assert.NotEmpty(t, resp.Header.Get(HeaderClaims))
		assert.Empty(t, resp.Header.Get(HeaderUserID), "a spoofed identity header is never echoed")
		assert.Equal(t, "x-authz-user-id", resp.Header.Get(envoyHeadersToRemove))
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
		assert.Empty(t, resp.Header.Get(HeaderSubject))
	})
}
