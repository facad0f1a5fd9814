package e2e

// Tests against a real third-party authorization server, ORY Hydra v2.3.0, for token
// introspection (RFC 7662) and revocation (RFC 7009). They run only when HYDRA_BIN names a
// Hydra binary; without it they skip (this is a documented recipe, not part of CI).
//
// Building the binary (once, into a cache directory outside the repository; none of Hydra's code
// or of its build module belongs in this repository):
//   - `go install github.com/ory/hydra/v2@v2.3.0` fails as is: Hydra's go.mod has `replace`
//     directives, which only the main module's go.mod may carry.
//   - So make a throwaway module in the cache directory that requires
//     `github.com/ory/hydra/v2 v2.3.0` and copies both of Hydra's replace lines: pop/v6 => Ory's
//     fork (the same pseudo-version), and hydra-client-go/v2 => ./internal/httpclient. The
//     second points into a nested module that the module proxy's zip leaves out: copy Hydra's
//     internal/httpclient directory at tag v2.3.0 from its source repository beside the
//     throwaway go.mod.
//   - Then `go mod tidy` and build with cgo and the tags Hydra's own Makefile uses (the
//     in-memory database is SQLite): `go build -tags sqlite,sqlite_omit_load_extension -o
//     <cache>/bin/hydra github.com/ory/hydra/v2`. It takes minutes on two cores.
//   - Run: `HYDRA_BIN=<cache>/bin/hydra go test ./e2e -run Hydra -v`.
//
// startHydra runs `hydra serve all --dev --sqa-opt-out` with DSN=memory (an in-memory SQLite
// database, migrated at start), both ports on free loopback addresses, and the issuer set to
// the public URL.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/testenv"
)

// hydraAudience is the audience every test client may request and every token is issued for.
const hydraAudience = "api://default"

// hydraScopes are the scopes every test client may request.
const hydraScopes = "messages:read messages:write"

// hydra is a running Hydra with an in-memory database.
type hydra struct {
	// issuer is the issuer identifier (URLS_SELF_ISSUER): what the tokens' and introspection
	// responses' iss say and what the discovery document names. It has no trailing slash.
	issuer string
	// publicURL serves the token, revocation, discovery and JWKS endpoints.
	publicURL string
	// adminURL serves the admin API: clients and introspection (no client authentication: keep
	// it on loopback).
	adminURL string
	client   *http.Client
	// stop shuts Hydra down and waits for it to exit (an outage, for the tests that need one);
	// the test's cleanup calls it too.
	stop func()
}

// introspectionURL is Hydra's introspection endpoint, on the admin port; the discovery document
// does not list it.
func (h *hydra) introspectionURL() string { return h.adminURL + "/admin/oauth2/introspect" }

// hydraBinary returns HYDRA_BIN, skipping the test when it is unset.
func hydraBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HYDRA_BIN")
	if bin == "" {
		t.Skip("HYDRA_BIN not set: build ORY Hydra v2.3.0 into a cache directory outside the " +
			"repository (see the comment at the top of e2e/hydra_test.go and docs/development.md), " +
			"then run HYDRA_BIN=/path/to/hydra go test ./e2e -run Hydra -v")
	}
	// Set but wrong is a mistake worth failing on, not a skip that hides the run.
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("HYDRA_BIN=%q is not an executable file (%v)", bin, err)
	}
	return bin
}

// startHydra starts Hydra on free loopback ports and waits until both ports answer ready.
func startHydra(t *testing.T) *hydra {
	t.Helper()
	bin := hydraBinary(t)
	publicAddr, adminAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	_, publicPort, _ := strings.Cut(publicAddr, ":")
	_, adminPort, _ := strings.Cut(adminAddr, ":")
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	dir := t.TempDir()
	h := &hydra{
		issuer:    "http://" + publicAddr,
		publicURL: "http://" + publicAddr,
		adminURL:  "http://" + adminAddr,
		client:    &http.Client{Timeout: 10 * time.Second},
	}

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", "all", "--dev", "--sqa-opt-out")
	// A clean environment: nothing of the caller's (a stray DSN, a config file) leaks in.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"TMPDIR=" + dir,
		"DSN=memory",
		"URLS_SELF_ISSUER=" + h.issuer,
		"URLS_SELF_PUBLIC=" + h.publicURL,
		"URLS_SELF_ADMIN=" + h.adminURL,
		"SERVE_PUBLIC_HOST=127.0.0.1",
		"SERVE_PUBLIC_PORT=" + publicPort,
		"SERVE_ADMIN_HOST=127.0.0.1",
		"SERVE_ADMIN_PORT=" + adminPort,
		"SECRETS_SYSTEM=" + hex.EncodeToString(secret),
		"STRATEGIES_ACCESS_TOKEN=opaque", // the default; each test client chooses its own
		"SQA_OPT_OUT=true",
		"LOG_LEVEL=info",
	}
	cmd.Dir = dir
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	h.stop = func() { cancel(); <-exited }
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("hydra output:\n%s", out.String())
		}
	})

	ready := func(base string) bool {
		resp, err := h.client.Get(base + "/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(60 * time.Second) // a busy two-core machine
	for !(ready(h.publicURL) && ready(h.adminURL)) {
		select {
		case <-exited:
			t.Fatalf("hydra exited before it was ready:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("hydra not ready after 60s:\n%s", out.String())
		}
	}
	return h
}

// syncBuffer is a bytes.Buffer that the process and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// do sends a request and returns the status and body.
func (h *hydra) do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	status, _, body := h.send(t, req)
	return status, body
}

// send is do with the response's headers.
func (h *hydra) send(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := h.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, body
}

// postForm posts a form, with HTTP Basic client authentication when id is set (RFC 6749
// §2.3.1: both parts form-encoded first).
func (h *hydra) postForm(t *testing.T, u string, form url.Values, id, secret string) (int, []byte) {
	t.Helper()
	return h.do(t, h.formRequest(t, u, form, id, secret))
}

func (h *hydra) formRequest(t *testing.T, u string, form url.Values, id, secret string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return req
}

// get fetches a URL.
func (h *hydra) get(t *testing.T, u string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	return h.do(t, req)
}

// createClient registers a client-credentials client through the admin API, allowed the
// scopes hydraScopes and the audience hydraAudience, authenticating with client_secret_basic,
// whose access tokens are opaque (ory_at_…) or JWTs. It returns the client's id and secret.
func (h *hydra) createClient(t *testing.T, opaque bool) (id, secret string) {
	t.Helper()
	strategy := "jwt"
	if opaque {
		strategy = "opaque"
	}
	body, err := json.Marshal(map[string]any{
		"client_name":                "envoy-okta-authz e2e (" + strategy + ")",
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{"token"},
		"scope":                      hydraScopes,
		"audience":                   []string{hydraAudience},
		"token_endpoint_auth_method": "client_secret_basic",
		"access_token_strategy":      strategy,
	})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, h.adminURL+"/admin/clients", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	status, resp := h.do(t, req)
	require.Equal(t, http.StatusCreated, status, "create client: %s", resp)
	var c struct {
		ID       string `json:"client_id"`
		Secret   string `json:"client_secret"`
		Strategy string `json:"access_token_strategy"`
	}
	require.NoError(t, json.Unmarshal(resp, &c))
	require.NotEmpty(t, c.ID, "create client: %s", resp)
	require.NotEmpty(t, c.Secret, "create client: %s", resp)
	require.Equal(t, strategy, c.Strategy, "create client: %s", resp)
	return c.ID, c.Secret
}

// token gets an access token for the client by the client-credentials grant at the public token
// endpoint, for hydraAudience.
func (h *hydra) token(t *testing.T, id, secret, scope string) string {
	t.Helper()
	status, body := h.postForm(t, h.publicURL+"/oauth2/token", url.Values{
		"grant_type": {"client_credentials"},
		"scope":      {scope},
		"audience":   {hydraAudience},
	}, id, secret)
	require.Equal(t, http.StatusOK, status, "token: %s", body)
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	require.NoError(t, json.Unmarshal(body, &tr))
	require.NotEmpty(t, tr.AccessToken, "token: %s", body)
	require.Equal(t, "bearer", strings.ToLower(tr.TokenType), "token: %s", body)
	return tr.AccessToken
}

// introspectRaw posts the token to the admin introspection endpoint (no client
// authentication), as the authz service will: token and token_type_hint=access_token.
func (h *hydra) introspectRaw(t *testing.T, token string) (int, []byte) {
	t.Helper()
	status, header, body := h.send(t, h.formRequest(t, h.introspectionURL(), url.Values{
		"token":           {token},
		"token_type_hint": {"access_token"},
	}, "", ""))
	t.Logf("introspection: HTTP %d (Content-Type %q, Cache-Control %q) %s",
		status, header.Get("Content-Type"), header.Get("Cache-Control"), bytes.TrimSpace(body))
	return status, body
}

// introspect is introspectRaw for a 200 answer, decoded (numbers as json.Number).
func (h *hydra) introspect(t *testing.T, token string) map[string]any {
	t.Helper()
	status, body := h.introspectRaw(t, token)
	require.Equal(t, http.StatusOK, status, "introspect: %s", body)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	require.NoError(t, dec.Decode(&m), "introspect: %s", body)
	return m
}

// revoke revokes the token at the public revocation endpoint with the client's credentials.
func (h *hydra) revoke(t *testing.T, id, secret, token string) {
	t.Helper()
	status, body := h.postForm(t, h.publicURL+"/oauth2/revoke", url.Values{
		"token":           {token},
		"token_type_hint": {"access_token"},
	}, id, secret)
	require.Equal(t, http.StatusOK, status, "revoke: %s", body)
}

// sortedKeys lists a JSON object's member names.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// compactJWS splits a compact JWS into its decoded header and payload, or says why it is not one.
func compactJWS(tok string) (header, payload map[string]any, ok bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil, false
	}
	dec := func(s string) (map[string]any, bool) {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, false
		}
		var m map[string]any
		return m, json.Unmarshal(raw, &m) == nil
	}
	header, ok1 := dec(parts[0])
	payload, ok2 := dec(parts[1])
	return header, payload, ok1 && ok2
}

// inactive is Hydra's whole answer for a token that is not active (fosite's encoder ends it
// with a newline).
const inactive = `{"active":false}`

// TestHydraFacts checks, against a real Hydra v2.3.0, what the introspection work relies on
// (FACTS.md, "Token introspection"), and logs the raw answers whose shapes the table tests copy.
func TestHydraFacts(t *testing.T) {
	h := startHydra(t)
	t.Logf("hydra: issuer %s, public %s, admin %s, introspection %s", h.issuer, h.publicURL, h.adminURL, h.introspectionURL())

	t.Run("opaque token: introspection active, then revoked", func(t *testing.T) {
		id, secret := h.createClient(t, true)
		tok := h.token(t, id, secret, "messages:read")
		t.Logf("opaque token: %s… (%d bytes, %d dots)", tok[:min(len(tok), 12)], len(tok), strings.Count(tok, "."))
		assert.True(t, strings.HasPrefix(tok, "ory_at_"), "opaque token %q", tok)
		_, _, isJWS := compactJWS(tok)
		assert.False(t, isJWS, "an opaque token is not a compact JWS: %q", tok)

		m := h.introspect(t, tok)
		assert.Equal(t, true, m["active"], "active is the JSON boolean true")
		assert.Equal(t, "messages:read", m["scope"], "scope: the granted scopes, space-separated")
		assert.Equal(t, id, m["client_id"])
		assert.Equal(t, id, m["sub"], "a client-credentials token's subject is the client")
		assert.Equal(t, []any{hydraAudience}, m["aud"], "aud is a list")
		assert.Equal(t, h.issuer, m["iss"])
		assert.Equal(t, "Bearer", m["token_type"])
		assert.Equal(t, "access_token", m["token_use"])
		var exp, iat, nbf int64
		for name, p := range map[string]*int64{"exp": &exp, "iat": &iat, "nbf": &nbf} {
			n, ok := m[name].(json.Number)
			if assert.True(t, ok, "%s is a number: %#v", name, m[name]) {
				v, err := n.Int64()
				assert.NoError(t, err, "%s is an integer", name)
				*p = v
			}
		}
		now := time.Now().Unix()
		assert.InDelta(t, now, iat, 120, "iat is now")
		assert.Equal(t, iat, nbf, "nbf is the issue time")
		assert.Equal(t, int64(time.Hour/time.Second), exp-iat, "exp: the default one-hour lifetime")
		assert.Equal(t, []string{"active", "aud", "client_id", "exp", "iat", "iss", "nbf", "scope", "sub", "token_type", "token_use"},
			sortedKeys(m), "the members of an active answer for a client-credentials token")

		h.revoke(t, id, secret, tok)
		status, body := h.introspectRaw(t, tok)
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, inactive+"\n", string(body), "a revoked token: exactly {\"active\":false}")
	})

	t.Run("unknown tokens are inactive, with 200", func(t *testing.T) {
		for _, tok := range []string{"ory_at_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", "not-a-token", "a.b.c"} {
			status, body := h.introspectRaw(t, tok)
			assert.Equal(t, http.StatusOK, status, "token %q", tok)
			assert.Equal(t, inactive+"\n", string(body), "token %q", tok)
		}
		// An empty form is a malformed request, not an inactive token.
		status, body := h.postForm(t, h.introspectionURL(), url.Values{}, "", "")
		t.Logf("introspection with an empty body: HTTP %d %s", status, bytes.TrimSpace(body))
		assert.Equal(t, http.StatusBadRequest, status)
	})

	t.Run("introspection is on the admin port only", func(t *testing.T) {
		for _, path := range []string{"/admin/oauth2/introspect", "/oauth2/introspect"} {
			status, body := h.postForm(t, h.publicURL+path, url.Values{"token": {"x"}}, "", "")
			t.Logf("public port POST %s: HTTP %d %s", path, status, bytes.TrimSpace(body))
			assert.Equal(t, http.StatusNotFound, status, "public port %s", path)
		}
	})

	var discovery map[string]any
	t.Run("discovery has no introspection_endpoint", func(t *testing.T) {
		status, body := h.get(t, h.publicURL+"/.well-known/openid-configuration")
		require.Equal(t, http.StatusOK, status, "%s", body)
		require.NoError(t, json.Unmarshal(body, &discovery))
		t.Logf("openid-configuration members: %v", sortedKeys(discovery))
		t.Logf("openid-configuration: issuer %v, jwks_uri %v, token_endpoint %v, revocation_endpoint %v",
			discovery["issuer"], discovery["jwks_uri"], discovery["token_endpoint"], discovery["revocation_endpoint"])
		assert.NotContains(t, discovery, "introspection_endpoint")
		assert.Equal(t, h.issuer, discovery["issuer"])
		assert.Equal(t, h.publicURL+"/.well-known/jwks.json", discovery["jwks_uri"])
		assert.Equal(t, h.publicURL+"/oauth2/token", discovery["token_endpoint"])
		assert.Equal(t, h.publicURL+"/oauth2/revoke", discovery["revocation_endpoint"])
	})

	t.Run("oauth-authorization-server", func(t *testing.T) {
		// The jwks package asks this (RFC 8414) path first and falls back to openid-configuration.
		status, body := h.get(t, h.publicURL+"/.well-known/oauth-authorization-server")
		t.Logf("/.well-known/oauth-authorization-server: HTTP %d %s", status, bytes.TrimSpace(body))
		assert.Equal(t, http.StatusNotFound, status)
	})

	t.Run("JWT token: a JWS whose kid is in the JWKS, revocable", func(t *testing.T) {
		id, secret := h.createClient(t, false)
		tok := h.token(t, id, secret, "messages:read")
		header, claims, isJWS := compactJWS(tok)
		require.True(t, isJWS, "a JWT-strategy token is a compact JWS: %q", tok)
		hj, _ := json.Marshal(header)
		cj, _ := json.Marshal(claims)
		t.Logf("JWT header: %s", hj)
		t.Logf("JWT claims: %s", cj)
		assert.Equal(t, h.issuer, claims["iss"])
		if discovery != nil {
			assert.Equal(t, discovery["issuer"], claims["iss"], "iss is the discovery document's issuer, exactly")
		}
		assert.Equal(t, id, claims["client_id"])
		assert.Equal(t, id, claims["sub"])
		assert.Equal(t, []any{hydraAudience}, claims["aud"])
		assert.Equal(t, []any{"messages:read"}, claims["scp"], "scopes as a list (strategies.jwt.scope_claim: list)")
		alg, _ := header["alg"].(string)
		kid, _ := header["kid"].(string)
		assert.Equal(t, "RS256", alg)
		require.NotEmpty(t, kid, "the header names a kid")

		req, err := http.NewRequest(http.MethodGet, h.publicURL+"/.well-known/jwks.json", nil)
		require.NoError(t, err)
		status, respHeader, body := h.send(t, req)
		require.Equal(t, http.StatusOK, status, "%s", body)
		t.Logf("JWKS Cache-Control: %q", respHeader.Get("Cache-Control"))
		set, err := jwk.Parse(body)
		require.NoError(t, err)
		var kids []string
		for i := range set.Len() {
			k, _ := set.Key(i)
			kid, _ := k.KeyID()
			alg, _ := k.Algorithm()
			use, _ := k.KeyUsage()
			t.Logf("JWKS key: kid %s, kty %s, alg %v, use %s", kid, k.KeyType(), alg, use)
			kids = append(kids, kid)
		}
		require.True(t, slices.Contains(kids, kid), "kid %q is in the JWKS %v", kid, kids)
		key, _ := set.LookupKeyID(kid)
		if ka, ok := key.Algorithm(); ok {
			assert.Equal(t, "RS256", ka.String(), "the key's alg")
		}
		_, err = jws.Verify([]byte(tok), jws.WithKey(jwa.RS256(), key))
		require.NoError(t, err, "the token verifies with the JWKS key")

		m := h.introspect(t, tok)
		assert.Equal(t, true, m["active"])
		assert.Equal(t, "messages:read", m["scope"])
		assert.Equal(t, id, m["client_id"])

		h.revoke(t, id, secret, tok)
		status, body = h.introspectRaw(t, tok)
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, inactive+"\n", string(body), "a revoked JWT: exactly {\"active\":false}")
	})
}
