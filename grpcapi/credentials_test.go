package grpcapi

import (
	"context"
	"net/http"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/envoy/envoytest"
	"github.com/platformauth/envoy-okta-authz/internal/authztest"
)

// credentialPolicy reads tokens from other places than the Authorization header, and a rule's
// condition reads a header.
const credentialPolicy = `rules:
  - name: ws
    match: { path: /ws }
    credentials: ["query:access_token"]
  - name: app
    match: { path: /app }
    credentials: ["cookie:at"]
  - name: hdr
    match: { path: /hdr }
    credentials: ["header:x-api-token"]
    require: { cel: 'request.headers["x-tenant"] == "acme" && !("x-api-token" in request.headers)' }
`

// TestTokenFromElsewhereNeverReachesTheUpstream: over gRPC, in both header forms Envoy sends,
// the allow removes the token wherever it came from, and nothing else; applied as Envoy v1.38
// applies a CheckResponse (envoytest).
func TestTokenFromElsewhereNeverReachesTheUpstream(t *testing.T) {
	e := newEnv(t, &authztest.Options{Policy: credentialPolicy})
	s := New(e.az)
	p, err := envoytest.Load("../envoy/envoy.yaml")
	require.NoError(t, err)
	tok, other := e.mint(t, nil), e.mint(t, map[string]any{"sub": "someone-else"})
	tests := []struct {
		name     string
		path     string
		headers  map[string]string
		wantPath string
		want     http.Header // upstream headers after the allow (besides identity)
	}{
		{"query", "/ws?b=2&access_token=" + tok + "&a=1", map[string]string{"cookie": "theme=dark"}, "/ws?a=1&b=2",
			http.Header{"Cookie": {"theme=dark"}}},
		{"cookie among others", "/app", map[string]string{"cookie": "theme=dark; at=" + tok + "; lang=nl"}, "/app",
			http.Header{"Cookie": {"theme=dark; lang=nl"}}},
		{"the only cookie", "/app?x=1", map[string]string{"cookie": "at=" + tok}, "/app?x=1", http.Header{}},
		{"header", "/hdr", map[string]string{"x-api-token": tok, "x-tenant": "acme"}, "/hdr", http.Header{"X-Tenant": {"acme"}}},
		// Token places the route does not read: a browser's cookie, a header; kept away too.
		{"authorization, with a token cookie and header", "/other", map[string]string{"authorization": "Bearer " + tok,
			"cookie": "theme=dark; at=" + other, "x-api-token": other}, "/other", http.Header{"Cookie": {"theme=dark"}}},
	}
	for _, raw := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req := checkRequest(tt.path, tt.headers, raw)
				resp, err := s.Check(context.Background(), req)
				require.NoError(t, err)
				require.Zero(t, resp.GetStatus().GetCode(), "%v", resp.GetDeniedResponse())
				upstream := http.Header{}
				for k, v := range tt.headers {
					upstream.Set(k, v)
				}
				reply, err := p.ApplyCheckResponse(upstream, resp, nil)
				require.NoError(t, err)
				require.Nil(t, reply)
				assert.Equal(t, tt.wantPath, envoytest.UpstreamPath(tt.path, resp.GetOkResponse()))
				for k := range upstream {
					if len(k) > 8 && k[:8] == "X-Authz-" {
						delete(upstream, k)
					}
				}
				assert.Equal(t, tt.want, upstream)
			})
		}
	}
}

// TestAllowsFromElsewhereAreNotMemoised: an allow's answer depends on the request when its
// token came from a query or a cookie, or when it carries a token cookie: the token's memoised
// allow is never reused for it.
func TestAllowsFromElsewhereAreNotMemoised(t *testing.T) {
	e := newEnv(t, &authztest.Options{Policy: credentialPolicy})
	s := New(e.az)
	tok := e.mint(t, nil)
	var resps []*authv3.CheckResponse
	for _, other := range []string{"a=1", "b=2"} {
		resp, err := s.Check(context.Background(), checkRequest("/app", map[string]string{"cookie": other + "; at=" + tok}, false))
		require.NoError(t, err)
		require.Zero(t, resp.GetStatus().GetCode())
		resps = append(resps, resp)
	}
	// A token from the Authorization header, with a token cookie the upstream must not get.
	for _, other := range []string{"c=3", "d=4"} {
		resp, err := s.Check(context.Background(), checkRequest("/other",
			map[string]string{"authorization": "Bearer " + tok, "cookie": other + "; at=x.y.z"}, false))
		require.NoError(t, err)
		require.Zero(t, resp.GetStatus().GetCode())
		resps = append(resps, resp)
	}
	cookie := func(r *authv3.CheckResponse) string {
		for _, h := range r.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "cookie" {
				return h.GetHeader().GetValue()
			}
		}
		return ""
	}
	assert.Equal(t, "a=1", cookie(resps[0]))
	assert.Equal(t, "b=2", cookie(resps[1]))
	assert.Equal(t, "c=3", cookie(resps[2]))
	assert.Equal(t, "d=4", cookie(resps[3]))
}
