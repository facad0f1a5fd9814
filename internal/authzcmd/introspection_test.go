package authzcmd

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

const introspectionSecret = "s3cr3t-never-printed"

// TestIntrospectionConfigChecks: the flags' settings and a policy file issuer's introspection:
// are checked alike — mode, auth and what it needs, an endpoint that can be found, https, the
// durations — and no error message holds the client secret.
func TestIntrospectionConfigChecks(t *testing.T) {
	secretEnvSet := env(map[string]string{secretEnv: introspectionSecret})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no issuer", []string{"--introspection", "always"}, "--introspection needs --issuer"},
		{"an unknown mode", []string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "sometimes"}, "sometimes"},
		{"basic without a client id", []string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "always"},
			"needs a client id and a client secret"},
		{"a key URL and no introspection URL", []string{"--issuer", "https://idp.example/oauth2/default", "--jwks-url", "https://idp.example/keys",
			"--introspection", "always", "--introspection-client-id", "rs"}, "no introspection_endpoint to read"},
		{"plain http", []string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "always", "--introspection-client-id", "rs",
			"--introspection-url", "http://idp.example/introspect"}, "plain http"},
		{"no cache TTL", []string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "always", "--introspection-client-id", "rs",
			"--introspection-cache-ttl", "0s"}, "--introspection-cache-ttl 0s must be between"},
		{"a day's cache", []string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "always", "--introspection-client-id", "rs",
			"--introspection-cache-ttl", "24h"}, "must be between 1ms and 1h"},
		{"credentials in the URL", []string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "always", "--introspection-client-id", "rs",
			"--introspection-url", "https://rs:" + introspectionSecret + "@idp.example/introspect"}, "user info"},
		{"private_key_jwt without a key", []string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "opaque",
			"--introspection-auth", "private_key_jwt", "--introspection-client-id", "rs"}, "needs a client id and a key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, secretEnvSet, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), introspectionSecret)
		})
	}

	t.Run("a policy file's issuer", func(t *testing.T) {
		dir := t.TempDir()
		for _, tc := range []struct{ name, introspection, want string }{
			{"plain http", "{mode: opaque, url: http://idp.example/introspect, auth: none}", "plain http"},
			{"a key URL and no introspection URL", "{mode: always, auth: none}", "no introspection_endpoint to read"},
			{"a day's cache", "{mode: always, url: https://idp.example/introspect, auth: none, cache_ttl: 24h}", "must be between 1ms and 1h"},
			{"an unknown auth", "{mode: always, url: https://idp.example/introspect, auth: mtls}", "mtls"},
		} {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			require.NoError(t, os.WriteFile(path, []byte(`issuers:
  - name: partner
    issuer: https://partner.example
    audiences: [api://partner]
    jwks_url: https://partner.example/keys
    introspection: `+tc.introspection+"\n"), 0o600))
			_, err := parseConfig([]string{"--policy", path}, env(nil), io.Discard)
			require.Error(t, err, tc.name)
			assert.Contains(t, err.Error(), `issuer "partner": introspection`, tc.name)
			assert.Contains(t, err.Error(), tc.want, tc.name)
		}
	})
}

// TestServiceIntrospects runs the service with --introspection always against a dev issuer
// that authenticates it by client_secret_basic (the secret from a file): a token is allowed,
// a revoked one refused, an opaque token is allowed, the
// metrics count the calls, and the logs hold neither the secret nor a token.
func TestServiceIntrospects(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{Clients: map[string]devidp.Client{
		"app": {Secret: "app-secret", Scopes: []string{"messages:read"}},
		"rs":  {Secret: introspectionSecret},
	}})
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(introspectionSecret+"\n"), 0o600))
	logs := &syncBuffer{}
	ls, stop := startService(t, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		"--issuer", idp.Issuer(), "--allow-http-issuer", "--log-level", "debug", "--decision-log", "all",
		"--introspection", "always", "--introspection-client-id", "rs", "--introspection-client-secret-file", secretFile,
		"--cache-size", "0")
	defer func() { require.NoError(t, stop()) }()

	conn, err := grpc.NewClient(ls.grpc.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(tok string) (codes.Code, string) {
		resp, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/messages",
				Headers: map[string]string{":path": "/api/messages", "authorization": "Bearer " + tok}}}}}, grpc.WaitForReady(true))
		require.NoError(t, err)
		var challenge string
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "www-authenticate" {
				challenge = h.GetHeader().GetValue()
			}
		}
		return codes.Code(resp.GetStatus().GetCode()), challenge
	}

	jwt, err := idp.Mint(devidp.TokenRequest{ClientID: "app", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	opaque, err := idp.MintOpaque(devidp.TokenRequest{ClientID: "app", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	// The key set loads in the background: the first check may wait for it (503).
	require.Eventually(t, func() bool { code, _ := check(jwt); return code == codes.OK }, 10e9, 10e6, "a live token is allowed")
	code, _ := check(opaque)
	assert.Equal(t, codes.OK, code, "an opaque token is allowed")

	// Revoked before its first use, so that no cached answer is in play (the cache and its
	// window have tests of their own).
	revoked, err := idp.Mint(devidp.TokenRequest{ClientID: "app", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	idp.Revoke(revoked)
	code, challenge := check(revoked)
	assert.Equal(t, codes.Unauthenticated, code, "a revoked token is refused")
	assert.Contains(t, challenge, `error="invalid_token"`)

	resp, err := http.Get("http://" + ls.admin.Addr().String() + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	for _, want := range []string{
		`authz_introspection_calls_total{issuer="default",result="active"}`,
		`authz_introspection_calls_total{issuer="default",result="inactive"} 1`,
		`authz_introspection_cache_total{issuer="default",result="miss"}`,
		`authz_checks_total{decision="invalid_token",frontend="grpc",reason="token_inactive",scheme="bearer"} 1`,
	} {
		assert.Contains(t, string(metrics), want)
	}
	assert.NotContains(t, string(metrics), introspectionSecret)
	for _, secret := range []string{introspectionSecret, jwt, opaque, revoked} {
		assert.NotContains(t, logs.String(), secret)
	}
}

// TestExplainShowsTheAnswer: authz explain prints what the endpoint said when the service would
// ask it, says "not asked" when it would not (a JWT under opaque), and never prints the secret.
func TestExplainShowsTheAnswer(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{Clients: map[string]devidp.Client{
		"app": {Secret: "app-secret", Scopes: []string{"messages:read"}},
		"rs":  {Secret: introspectionSecret},
	}})
	jwt, err := idp.Mint(devidp.TokenRequest{ClientID: "app", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	opaque, err := idp.MintOpaque(devidp.TokenRequest{ClientID: "app", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	environment := map[string]string{secretEnv: introspectionSecret}
	for _, tc := range []struct {
		name, mode, token, want string
		code                    int
	}{
		{"a JWT under always", "always", jwt, `active: {"active":true`, 0},
		{"an opaque token", "opaque", opaque, `active: {"active":true`, 0},
		{"a JWT under opaque", "opaque", jwt, "not asked", 0},
		{"a forged JWT under always", "always", jwt[:len(jwt)-4] + "AAAA", "not asked", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(environment, "explain", "--issuer", idp.Issuer(), "--allow-http-issuer",
				"--introspection", tc.mode, "--introspection-client-id", "rs", "--path", "/api/messages", tc.token)
			assert.Equal(t, tc.code, code, "%s%s", out, errOut)
			assert.Contains(t, out, "Introspection (--introspection "+tc.mode+"):")
			assert.Contains(t, out, tc.want)
			assert.NotContains(t, out+errOut, introspectionSecret)
		})
	}
}
