package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/platformauth/envoy-okta-authz/envoy/envoytest"
	"github.com/platformauth/envoy-okta-authz/policy"
)

// TestClaimHeadersReachTheAPI: an operator adds email and groups as x-user-email and
// x-user-groups in the policy; the demo API receives them through real nginx (configured with
// `authz proxy-config nginx`'s blocks) and through Envoy (envoy.yaml, played from its source);
// a client's copies never pass, nor any other x-authz-* header; the token stays away from the
// API.
func TestClaimHeadersReachTheAPI(t *testing.T) {
	s := startStack(t, "testdata/identity-policy.yaml")
	headers := append(append([]string{}, policy.FixedIdentityHeaders...), "x-user-email", "x-user-groups")
	nginx := startNginxWith(t, s, host(s.apiURL), headers)
	envoy, err := envoytest.Load("../envoy/envoy.yaml")
	require.NoError(t, err)
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	check := authv3.NewAuthorizationClient(conn)

	var mu sync.Mutex
	var got http.Header
	s.served.Store(ptr(func(r *http.Request, _ int) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
	}))
	full := s.mint(t, map[string]any{"email": "ada@example.com", "groups": []string{"admins", "users"}})
	noGroups := s.mint(t, map[string]any{"email": "bob@example.com"})
	// Every spelling a client might try: duplicates, other cases of the same name (sent as
	// separate header lines), and underscores that CGI-style upstreams (PHP, Django, Rails)
	// read as dashes.
	spoofed := func(tok string) http.Header {
		return http.Header{"Authorization": {"Bearer " + tok}, "X-User-Email": {"mallory@example.com"},
			"X-User-Groups": {"root", "wheel"}, "X-Authz-Subject": {"root"}, "X-Authz-User-Id": {"root", "root2"},
			"X-USER-EMAIL": {"mallory@example.com"}, "x-authz-subject": {"root"}, "x-Authz-Claims": {"root"},
			"X_User_Email": {"mallory@example.com"}, "X_Authz_Subject": {"root"}, "x_user_groups": {"root"},
			// x-authz-* names the service never sets: none may reach the API either.
			"X-Authz-Role": {"root"}, "x-AUTHZ-anything": {"wheel"}, "X-Authz-Subject-Extra": {"root"}}
	}
	noSpoofArrived := func(t *testing.T) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for k, vs := range got {
			for _, v := range vs {
				assert.NotContains(t, []string{"mallory@example.com", "root", "wheel", "root2"}, v,
					"a client's %s reached the API", k)
			}
		}
	}
	viaNginx := func(h http.Header) {
		resp, err := rawRequest(host(nginx), "GET", "/secure", h)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
	}
	viaEnvoy := func(h http.Header) {
		h = h.Clone()
		require.True(t, envoy.AcceptHeaders(h), "the listener takes the request")
		hs := map[string]string{":method": "GET", ":path": "/secure", ":authority": "api.example"}
		for k := range h {
			hs[strings.ToLower(k)] = h.Get(k)
		}
		resp, err := check.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/secure", Host: "api.example", Headers: hs}},
			ContextExtensions: map[string]string{"policy": "secure"}}})
		require.NoError(t, err)
		upstream := h.Clone()
		reply, err := envoy.ApplyCheckResponse(upstream, resp, nil)
		require.NoError(t, err)
		require.Nil(t, reply, "allowed")
		r, err := rawRequest(host(s.apiURL), "GET", "/secure", upstream)
		require.NoError(t, err)
		require.Equal(t, 200, r.StatusCode)
	}
	for name, via := range map[string]func(http.Header){"nginx": viaNginx, "envoy": viaEnvoy} {
		t.Run(name, func(t *testing.T) {
			via(spoofed(full))
			noSpoofArrived(t)
			mu.Lock()
			assert.Equal(t, "ada@example.com", got.Get("X-User-Email"))
			assert.Equal(t, "admins,users", got.Get("X-User-Groups"))
			assert.Equal(t, "test-client", got.Get("X-Authz-Subject"))
			assert.Empty(t, got.Values("Authorization"), "the token stays away from the API")
			mu.Unlock()

			via(spoofed(noGroups))
			noSpoofArrived(t)
			mu.Lock()
			assert.Equal(t, "bob@example.com", got.Get("X-User-Email"))
			assert.Empty(t, got.Values("X-User-Groups"), "no groups claim: the client's copy is gone too")
			mu.Unlock()
		})
	}
}
