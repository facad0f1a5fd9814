package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/authztest"
)

// TestAllowSaysHowToKeepTheTokenFromTheUpstream: a token from the query, a cookie or a header
// of its own: the allow's answer says what the proxy forwards instead (X-Upstream-Uri, Cookie)
// and what it removes (x-envoy-auth-headers-to-remove); under a policy that reads cookies every
// allow says which Cookie the upstream gets.
func TestAllowSaysHowToKeepTheTokenFromTheUpstream(t *testing.T) {
	e := newEnv(t, &authztest.Options{Policy: `rules:
  - name: ws
    match: { path: /ws }
    credentials: [authorization, "query:access_token"]
  - name: app
    match: { path: /app }
    credentials: ["cookie:at"]
  - name: hdr
    match: { path: /hdr }
    credentials: ["header:x-api-token"]
  - name: fwd
    match: { path: /fwd }
    credentials: ["cookie:at"]
    identity: { forward_authorization: true }
`})
	tok, other := e.mint(t, nil), e.mint(t, map[string]any{"sub": "someone-else"})
	tests := []struct {
		name    string
		uri     string
		headers map[string]string
		want    map[string]string // answer headers; "" means absent
		forward bool              // the rule forwards the token: the answer may carry it
	}{
		{"query", "/ws?room=1&access_token=" + tok + "&z=%2F", nil,
			map[string]string{"X-Upstream-Uri": "/ws?room=1&z=%2F", "Cookie": "", "X-Envoy-Auth-Headers-To-Remove": "authorization,dpop,x-api-token"}, false},
		{"authorization, with cookies", "/ws?room=1", map[string]string{"Authorization": "Bearer " + tok, "Cookie": "theme=dark"},
			map[string]string{"X-Upstream-Uri": "", "Cookie": "theme=dark"}, false},
		{"cookie", "/app", map[string]string{"Cookie": "theme=dark; at=" + tok},
			map[string]string{"X-Upstream-Uri": "", "Cookie": "theme=dark", "X-Envoy-Auth-Headers-To-Remove": "authorization,dpop,x-api-token"}, false},
		{"the only cookie", "/app", map[string]string{"Cookie": "at=" + tok},
			map[string]string{"Cookie": "", "X-Envoy-Auth-Headers-To-Remove": "authorization,dpop,x-api-token,cookie"}, false},
		{"header", "/hdr", map[string]string{"X-Api-Token": tok},
			map[string]string{"X-Envoy-Auth-Headers-To-Remove": "authorization,dpop,x-api-token"}, false},
		// Token places this route does not read: kept from the upstream all the same.
		{"a token cookie and header on another route", "/other", map[string]string{"Authorization": "Bearer " + tok,
			"Cookie": "theme=dark; at=" + other, "X-Api-Token": other},
			map[string]string{"Cookie": "theme=dark", "X-Envoy-Auth-Headers-To-Remove": "authorization,dpop,x-api-token"}, false},
		// A rule that forwards the token: the proxy sets the Cookie the request had, not none.
		{"forwarded cookie", "/fwd", map[string]string{"Cookie": "theme=dark; at=" + tok},
			map[string]string{"Cookie": "theme=dark; at=" + tok, "X-Envoy-Auth-Headers-To-Remove": ""}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("X-Original-URI", tt.uri)
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Original-Host", "api.example")
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			New(e.az, Options{Source: SourceNginx}).ServeHTTP(rec, req)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			for k, v := range tt.want {
				assert.Equal(t, v, rec.Header().Get(k), k)
			}
			if tt.forward {
				return
			}
			for k, vs := range rec.Header() {
				for _, v := range vs {
					assert.NotContains(t, v, tok, "%s carries the token", k)
					assert.NotContains(t, v, other, "%s carries the other token", k)
				}
			}
		})
	}
}
