package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/devstack"
)

// startDevstack starts the local stack (go run ./cmd/devstack) on free loopback ports.
func startDevstack(t *testing.T, nginx, key string) *devstack.Stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := devstack.Start(ctx, devstack.Options{
		IssuerAddr: freePort(t), GRPCAddr: freePort(t), HTTPAddr: freePort(t), AdminAddr: freePort(t),
		APIAddr: freePort(t), ProxyAddr: freePort(t), Nginx: nginx, Key: key, Dir: t.TempDir(),
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, s.Wait(), "the stack stops cleanly")
	})
	return s
}

// status sends GET url with token (none when empty).
func status(t *testing.T, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDevstackPromises: the guide the local stack prints holds — through real nginx, and
// without a proxy against the HTTP decision API — and a key file keeps tokens valid across a
// restart.
func TestDevstackPromises(t *testing.T) {
	key := filepath.Join(t.TempDir(), "dev-key.pem")
	for _, tc := range []struct{ name, nginx string }{{"nginx", nginxBinary(t)}, {"no proxy", "-"}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDevstack(t, tc.nginx, key)
			base := s.Proxy
			if tc.nginx == "-" {
				require.Empty(t, s.Proxy)
				base = s.HTTP
			}
			guide := s.Guide()
			for _, want := range []string{"curl -i " + base + "/api/messages", "export TOKEN=" + s.Tokens["read"],
				"export TOKEN_WRITE=" + s.Tokens["write"], s.Issuer} {
				assert.Contains(t, guide, want)
			}
			assert.Equal(t, http.StatusUnauthorized, status(t, base+"/api/messages", ""), "# 401: no token")
			assert.Equal(t, http.StatusForbidden, status(t, base+"/api/messages", s.Tokens["write"]), "# 403: lacks messages:read")
			assert.Equal(t, http.StatusOK, status(t, base+"/api/messages", s.Tokens["read"]), "# 200")
			assert.Contains(t, guide, "export REVOKED="+s.Tokens["revoked"])
			assert.Equal(t, http.StatusUnauthorized, status(t, base+"/api/messages", s.Tokens["revoked"]), "# 401: token_inactive")
			assert.Contains(t, guide, "export OPAQUE="+s.Tokens["opaque"])
			assert.Equal(t, http.StatusOK, status(t, base+"/api/messages", s.Tokens["opaque"]), "# 200: an opaque token")
			assert.True(t, strings.HasPrefix(s.Issuer, "http://localhost:"), "the dev issuer convention")
		})
	}
	t.Run("a token survives a restart with the key file", func(t *testing.T) {
		o := devstack.Options{IssuerAddr: freePort(t), GRPCAddr: freePort(t), HTTPAddr: freePort(t),
			AdminAddr: freePort(t), APIAddr: freePort(t), Nginx: "-", Key: key}
		ctx, stop := context.WithCancel(context.Background())
		first, err := devstack.Start(ctx, o)
		require.NoError(t, err)
		tok := first.Tokens["read"]
		stop()
		require.NoError(t, first.Wait())

		ctx, stop = context.WithCancel(context.Background())
		defer stop()
		second, err := devstack.Start(ctx, o)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, status(t, second.HTTP+"/api/messages", tok), "yesterday's token")
	})
}
