package authzcmd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/internal/proxyconf"
	"github.com/platformauth/envoy-okta-authz/policy"
)

const policyV1 = "rules:\n  - name: m\n    match: {path: /m}\n    require: {scopes: [messages:read]}\n"
const policyV2 = "rules:\n  - name: m2\n    match: {path: /m}\n    require: {scopes: [messages:write]}\n"

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func TestPolicyFlagValidatesAtStartup(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "rules:\n  - name: x\n    match: {path: nope}\n")
	_, err := parseConfig([]string{"--issuer", "https://x.example/oauth2/default", "--policy", bad}, env(nil), io.Discard)
	assert.ErrorContains(t, err, `line 2: rule "x": path "nope" must start with /`)

	noIssuer := filepath.Join(dir, "p.yaml")
	writeFile(t, noIssuer, policyV1)
	_, err = parseConfig([]string{"--policy", noIssuer}, env(nil), io.Discard)
	assert.ErrorContains(t, err, "no issuer")

	withIssuer := filepath.Join(dir, "i.yaml")
	writeFile(t, withIssuer, "issuers:\n  - {name: okta, issuer: 'http://idp.example/oauth2/x', audiences: [api://x]}\n"+
		"rules:\n  - {name: r, match: {path: /}, require: {issuers: [okta]}}\n")
	_, err = parseConfig([]string{"--policy", withIssuer}, env(nil), io.Discard)
	assert.ErrorContains(t, err, "plain http", "policy issuers get the same URL checks")
	c, err := parseConfig([]string{"--policy", withIssuer, "--allow-http-issuer"}, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "okta", c.PolicyRules.Issuers[0].Name)
}

func TestPolicyReload(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyV1)
	c, err := parseConfig([]string{"--issuer", idp.Issuer(), "--allow-http-issuer", "--policy", path}, env(nil), io.Discard)
	require.NoError(t, err)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	az, _, _, err := buildAuthorizer(c, log, prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup, stopHUP := catchHUP()
	defer stopHUP()
	go watchPolicy(ctx, c, az, log, 10*time.Millisecond, hup)

	rule := func() string { return az.Policy().Rules[0].Name }
	assert.Equal(t, "m", rule())

	// A valid change is picked up from the file.
	writeFile(t, path, policyV2)
	require.Eventually(t, func() bool { return rule() == "m2" }, 5*time.Second, 5*time.Millisecond)

	// An invalid one is rejected and logged; the running policy stays.
	writeFile(t, path, "rules:\n  - name: broken\n    match: {path: nope}\n")
	require.Eventually(t, func() bool { return bytes.Contains([]byte(logs.String()), []byte("policy reload rejected")) }, 5*time.Second, 5*time.Millisecond, "logs: %s", logs.String())
	assert.Equal(t, "m2", rule())
	assert.Contains(t, logs.String(), "must start with /")

	// A change of issuers needs a restart.
	reloadPolicy(c, az, log, "test")
	writeFile(t, path, "issuers:\n  - {name: other, issuer: 'https://o.example', audiences: [a]}\n"+policyV1)
	reloadPolicy(c, az, log, "sighup")
	assert.Equal(t, "m2", rule())
	assert.Contains(t, logs.String(), "restart the service to change issuers")
}

func TestExplain(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyV2)
	c, err := parseConfig([]string{"--issuer", idp.Issuer(), "--allow-http-issuer", "--policy", path}, env(nil), io.Discard)
	require.NoError(t, err)
	tok, err := idp.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}})
	require.NoError(t, err)

	var out bytes.Buffer
	code := explain(context.Background(), c, "Bearer "+tok, explainRequest{Method: "GET", Path: "/m"}, &out)
	assert.Equal(t, 1, code)
	text := out.String()
	for _, want := range []string{`"cid": "test-client"`, "keys loaded", "pass         signature",
		"FAIL         rule: scopes", "missing scope messages:write", "Rule:     m2",
		"Decision: insufficient_scope, HTTP 403", `scope="messages:write"`} {
		assert.Contains(t, text, want)
	}

	out.Reset()
	code = explain(context.Background(), c, tok, explainRequest{Method: "GET", Path: "/other"}, &out)
	assert.Equal(t, 0, code)
	assert.Contains(t, out.String(), "Decision: allow, HTTP 200")
	assert.Contains(t, out.String(), "upstream x-authz-subject: test-client")

	out.Reset()
	expired, err := idp.Mint(devidp.TokenRequest{ClientID: "c", Extra: map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}})
	require.NoError(t, err)
	explain(context.Background(), c, expired, explainRequest{Method: "GET", Path: "/"}, &out)
	assert.Contains(t, out.String(), "FAIL         exp present and not past")
	assert.Contains(t, out.String(), "not reached  cid allowed")

	// An unreachable issuer is said plainly.
	c2, err := parseConfig([]string{"--issuer", "http://127.0.0.1:1/oauth2/default", "--allow-http-issuer"}, env(nil), io.Discard)
	require.NoError(t, err)
	out.Reset()
	explain(context.Background(), c2, tok, explainRequest{Method: "GET", Path: "/"}, &out)
	assert.Contains(t, out.String(), "UNREACHABLE")
	assert.Contains(t, out.String(), "the signature cannot be verified")
}

// TestShippedNginxConfMirrorsTheIdentity: deploy/nginx/nginx.conf's identity blocks are what
// `authz proxy-config nginx` writes for the default identity, so they never drift apart.
func TestShippedNginxConfMirrorsTheIdentity(t *testing.T) {
	conf, err := os.ReadFile("../../deploy/nginx/nginx.conf")
	require.NoError(t, err)
	c, err := parseConfig([]string{"--issuer", "https://idp.example/oauth2/default"}, env(nil), io.Discard)
	require.NoError(t, err)
	snippet, err := proxySnippet(c, "nginx")
	require.NoError(t, err)
	server, location := proxyconf.NginxBlocks(policy.FixedIdentityHeaders, false, nil)
	assert.Contains(t, snippet, server)
	assert.Contains(t, snippet, location)
	assert.Contains(t, string(conf), server, "nginx.conf's server block is the generated one")
	assert.Contains(t, string(conf), location, "nginx.conf's location block is the generated one")
}

func TestProxyConfigNamesConfiguredHeaders(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte("identity:\n  claims: [{header: x-user-email, claim: email}]\n  forward_authorization: true\n"), 0o600))
	c, err := parseConfig([]string{"--issuer", "https://idp.example/oauth2/default", "--policy", policy,
		"--claim-headers", "x-user-groups=groups"}, env(nil), io.Discard)
	require.NoError(t, err)
	for proxy, want := range map[string][]string{
		"nginx":   {"auth_request_set $authz_x_user_email $upstream_http_x_user_email;", "proxy_set_header x-user-email $authz_x_user_email;"},
		"traefik": {"  - X-User-Email", "X-Authz-Subject"},
		"envoy":   {"- exact: x-user-email", "- prefix: x-authz-"},
	} {
		snippet, err := proxySnippet(c, proxy)
		require.NoError(t, err)
		for _, w := range want {
			assert.Contains(t, snippet, w, proxy)
		}
		assert.LessOrEqual(t, strings.Count(snippet, "proxy_set_header Cookie"), 1, "one Cookie header for the API, whatever the number of token cookies")
		assert.LessOrEqual(t, strings.Count(snippet, "    - exact: cookie\n"), 1, "cookie named once")
		assert.NotContains(t, snippet, "x-user-groups", "%s: the file's claims replace the flag's", proxy)
		assert.NotContains(t, snippet, `Authorization ""`, "%s: forward_authorization keeps the token", proxy)
	}
	_, err = proxySnippet(c, "haproxy")
	assert.Error(t, err)
}

// TestSIGHUPDuringAPartialWrite: a SIGHUP while the file is still being written (a `cat >`,
// an editor writing in place) never loads the part written so far: here that part is valid
// YAML that lacks the scope rule, which would let any valid token through to /admin (it was
// loaded, and allowed 124,930 requests in the run). The file is loaded once it stops
// changing; a reload that drops a rule is logged as such.
func TestSIGHUPDuringAPartialWrite(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	path := filepath.Join(t.TempDir(), "policy.yaml")
	full := "rules:\n  - name: health\n    match: {path: /healthz}\n    public: true\n" +
		"  - name: admin\n    match: {path_prefix: /admin}\n    require: {scopes: [admin]}\n"
	writeFile(t, path, full)
	c, err := parseConfig([]string{"--issuer", idp.Issuer(), "--allow-http-issuer", "--policy", path}, env(nil), io.Discard)
	require.NoError(t, err)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	az, _, _, err := buildAuthorizer(c, log, prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	// A long poll interval: only the SIGHUP path acts here.
	w := &policyWatcher{c: c, az: az, log: log, poll: time.Hour, settle: 300 * time.Millisecond}
	go w.run(ctx, hup)

	// The writer truncates and writes the first half; the signal arrives; the writer goes on
	// writing in small pieces, each within the settle time of the last.
	updated := full + "  - name: reports\n    match: {path_prefix: /reports}\n    require: {scopes: [reports]}\n"
	cut := strings.Index(updated, "  - name: admin")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(updated[:cut])
	require.NoError(t, err)
	hup <- syscall.SIGHUP
	rest := updated[cut:]
	for len(rest) > 0 {
		n := min(8, len(rest))
		_, err = f.WriteString(rest[:n])
		require.NoError(t, err)
		rest = rest[n:]
		// Every policy the service held so far has the admin rule.
		require.NotNil(t, ruleNamed(az.Policy(), "admin"), "a half-written file was loaded")
		time.Sleep(5 * time.Millisecond) // the writer's pace, well under the settle time
	}
	require.NoError(t, f.Close())
	require.Eventually(t, func() bool { return ruleNamed(az.Policy(), "reports") != nil }, 5*time.Second, 5*time.Millisecond,
		"the whole file is loaded once it stops changing")
	assert.NotNil(t, ruleNamed(az.Policy(), "admin"))

	// A reload that removes a rule says so.
	writeFile(t, path, "rules:\n  - name: health\n    match: {path: /healthz}\n    public: true\n")
	hup <- syscall.SIGHUP
	require.Eventually(t, func() bool { return ruleNamed(az.Policy(), "admin") == nil }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, logs.String(), `"removed":"admin,reports"`)
}

func ruleNamed(p *policy.Policy, name string) *policy.Rule {
	for _, r := range p.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// TestProxyConfigKeepsTokensFromElsewhereFromTheAPI: a policy that reads tokens from a cookie,
// a header or the query: each proxy's snippet passes those places to the service and keeps
// them from the API, or says it cannot.
func TestProxyConfigKeepsTokensFromElsewhereFromTheAPI(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`rules:
  - name: app
    match: { path: /app }
    credentials: ["cookie:at", "header:x-api-token", "cookie:sid"]
  - name: ws
    match: { path: /ws }
    credentials: ["query:access_token"]
`), 0o600))
	c, err := parseConfig([]string{"--issuer", "https://idp.example/oauth2/default", "--policy", file}, env(nil), io.Discard)
	require.NoError(t, err)
	for proxy, want := range map[string][]string{
		"nginx": {"auth_request_set $authz_cookie $upstream_http_cookie;", "proxy_set_header Cookie $authz_cookie;",
			`proxy_set_header x-api-token "";`, "auth_request_set $authz_upstream_uri $upstream_http_x_upstream_uri;",
			"proxy_pass http://api$authz_target;"},
		"traefik": {"#   X-Api-Token, Cookie", "  - Cookie", `X-Api-Token: ""`, "Traefik cannot remove it"},
		"envoy":   {"    - exact: cookie\n", "    - exact: x-api-token\n", "        - exact: cookie", "http_service cannot change a query"},
	} {
		snippet, err := proxySnippet(c, proxy)
		require.NoError(t, err)
		for _, w := range want {
			assert.Contains(t, snippet, w, proxy)
		}
		assert.LessOrEqual(t, strings.Count(snippet, "proxy_set_header Cookie"), 1, "one Cookie header for the API, whatever the number of token cookies")
		assert.LessOrEqual(t, strings.Count(snippet, "    - exact: cookie\n"), 1, "cookie named once")
	}
}
