package authzcmd

import (
	"bytes"
	"context"
	"crypto/rsa"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/testenv"
)

// runCLI runs the command as the binary would, with env as its environment.
func runCLI(env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpListsCommandsAndEnvironment(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, errOut := runCLI(nil, args...)
		require.Equal(t, 0, code, args)
		assert.Empty(t, errOut)
		for _, want := range []string{"authz explain [flags] [TOKEN|-]", "authz proxy-config", "authz healthcheck URL",
			"authz version", "--issuer string", "(AUTHZ_ISSUER)", "--leeway duration", `(default "2m0s", AUTHZ_LEEWAY)`, "--dev-key"} {
			assert.Contains(t, out, want, args)
		}
	}
}

func TestSubcommandHelp(t *testing.T) {
	code, out, _ := runCLI(nil, "explain", "--help")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "Usage: authz explain [flags] [TOKEN|-]")
	assert.Contains(t, out, "standard input")
	assert.Contains(t, out, "--route-policy string")
	assert.Contains(t, out, "--issuer --jwks-url", "the service flags by name")
	assert.NotContains(t, out, "clock skew allowed", "not the service flags' descriptions")
	_, same, _ := runCLI(nil, "help", "explain")
	assert.Equal(t, out, same)

	code, out, _ = runCLI(nil, "healthcheck", "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "Usage: authz healthcheck URL")
	code, _, errOut := runCLI(nil, "healthcheck")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "Usage: authz healthcheck URL")

	code, out, _ = runCLI(nil, "proxy-config", "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "nginx|traefik|envoy")
	code, _, errOut = runCLI(nil, "help", "nope")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `no command "nope"`)
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		code, out, _ := runCLI(nil, arg)
		require.Equal(t, 0, code)
		assert.True(t, strings.HasPrefix(out, "authz "), out)
		assert.Contains(t, out, " go1.")
	}
}

// TestMistakesAreReportedOnceWithTheFix: a bad flag or variable is named with what it wants,
// once, without 60 lines of usage.
func TestMistakesAreReportedOnceWithTheFix(t *testing.T) {
	code, out, errOut := runCLI(nil, "--dev", "--nope")
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Equal(t, 1, strings.Count(errOut, "flag provided but not defined: --nope"), errOut)
	assert.Contains(t, errOut, "authz --help lists every flag")
	assert.Less(t, strings.Count(errOut, "\n"), 5, errOut)

	_, _, errOut = runCLI(nil, "--dev", "--leeway", "5")
	assert.Contains(t, errOut, `--leeway "5": want a duration with a unit, such as 90s, 2m or 1h`)
	_, _, errOut = runCLI(map[string]string{"AUTHZ_LEEWAY": "5", "AUTHZ_DEV": "yes"}, "--check-config")
	assert.Contains(t, errOut, `AUTHZ_LEEWAY="5": want a duration with a unit`)
	assert.Contains(t, errOut, `AUTHZ_DEV="yes": want true or false`)
	_, _, errOut = runCLI(nil, "--dev", "--cache-size", "lots")
	assert.Contains(t, errOut, `--cache-size "lots": want a whole number`)
}

// TestDevUsesTheDevIssuerConvention: --dev names the issuer devidp serves by default, loads the
// demo policy, and points at a running dev issuer with --issuer.
func TestDevUsesTheDevIssuerConvention(t *testing.T) {
	c, err := parseConfig([]string{"--dev"}, func(string) string { return "" }, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "http://localhost:9400/oauth2/default", c.Issuer)
	assert.Equal(t, devidp.IssuerFor(devidp.DefaultAddr), c.Issuer, "the same as devidp's")
	require.NotNil(t, c.PolicyRules, "the demo policy")
	names := []string{}
	for _, r := range c.PolicyRules.Rules {
		names = append(names, r.Name)
	}
	assert.Contains(t, names, "messages")
	assert.False(t, c.devExternal)

	c, err = parseConfig([]string{"--dev", "--issuer", "http://localhost:9555/oauth2/default"}, func(string) string { return "" }, &bytes.Buffer{})
	require.NoError(t, err)
	assert.True(t, c.devExternal, "a running dev issuer")
	assert.True(t, c.AllowHTTPIssuer)

	_, err = parseConfig([]string{"--dev", "--issuer", "https://example.okta.com/oauth2/default"}, func(string) string { return "" }, &bytes.Buffer{})
	assert.ErrorContains(t, err, "drop --dev", "--dev never runs against a real issuer")
}

// TestDevAndDevidpTokensAreInterchangeable: authz --dev with --dev-key, and devidp with the same
// key file (--key) at the same address, sign tokens each other's verifier accepts.
func TestDevAndDevidpTokensAreInterchangeable(t *testing.T) {
	key := filepath.Join(t.TempDir(), "dev-key.pem")
	issuerAddr, httpAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var out bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"--dev", "--dev-key", key, "--dev-addr", issuerAddr, "--http-addr", httpAddr,
			"--grpc-addr", testenv.FreeAddr(t), "--admin-addr", testenv.FreeAddr(t)}, func(string) string { return "" }, &out, io.Discard)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// What devidp --key FILE --addr ADDR would sign with, minted without its server.
	var signing *rsa.PrivateKey
	require.Eventually(t, func() bool {
		if _, err := os.Stat(key); err != nil {
			return false // not written yet: loading would create another key
		}
		k, _, err := devidp.LoadSigningKey(key) // an error: caught mid-write, try again
		signing = k
		return err == nil
	}, 15*time.Second, 20*time.Millisecond, "authz --dev-key creates the file")
	idp, err := devidp.New(devidp.Config{Issuer: devidp.IssuerFor(issuerAddr), SigningKey: signing,
		Clients: map[string]devidp.Client{"demo-client": {Secret: "s", Scopes: []string{"messages:read"}}}})
	require.NoError(t, err)
	tok, err := idp.Mint(devidp.TokenRequest{ClientID: "demo-client", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/messages", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 15*time.Second, 50*time.Millisecond, "a devidp token is accepted by authz --dev with the same key")
	assert.Contains(t, out.String(), "export TOKEN=", "--dev printed its own tokens")
}
