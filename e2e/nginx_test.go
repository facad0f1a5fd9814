package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/demoapi"
	nginxconf "github.com/platformauth/envoy-okta-authz/deploy/nginx"
	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/proxyconf"
	"github.com/platformauth/envoy-okta-authz/internal/testenv"
)

// nginxBinary finds nginx where the local stack looks for it; without it the test fails in CI
// and skips elsewhere.
func nginxBinary(t *testing.T) string {
	t.Helper()
	path, err := nginxconf.Binary()
	if err != nil {
		testenv.Missing(t, "nginx", "apt-get install -y nginx-light libnginx-mod-http-headers-more-filter")
	}
	return path
}

func freePort(t *testing.T) string { return testenv.FreeAddr(t) }

// startNginx runs deploy/nginx/nginx.conf — the file users copy — with its upstreams pointed at
// the stack and its listener on a free loopback port (deploy/nginx.Local, as the local dev stack
// does), and returns the base URL.
func startNginx(t *testing.T, s *stack) string {
	t.Helper()
	return startNginxFor(t, s, host(s.apiURL))
}

// startNginxFor is startNginx with another API upstream (host:port) behind nginx.
func startNginxFor(t *testing.T, s *stack, api string) string {
	t.Helper()
	return startNginxWith(t, s, api, nil)
}

// startNginxWith is startNginxFor with the identity blocks that `authz proxy-config nginx`
// writes for identity (the identity headers), as the README tells operators to do; nil keeps
// the shipped ones.
func startNginxWith(t *testing.T, s *stack, api string, identity []string) string {
	t.Helper()
	base, _ := startNginxIn(t, s, api, identity)
	return base
}

// startNginxIn is startNginxWith that also returns nginx's directory (its logs).
func startNginxIn(t *testing.T, s *stack, api string, identity []string) (base, dir string) {
	t.Helper()
	bin := nginxBinary(t)
	dir = t.TempDir()
	addr := freePort(t)
	text, err := nginxconf.Local{Listen: addr, API: api, AuthzHTTP: host(s.httpURL), Dir: dir}.Render()
	if errors.Is(err, nginxconf.ErrNoHeadersMore) {
		testenv.Missing(t, "nginx's headers-more module", "apt-get install -y libnginx-mod-http-headers-more-filter")
	}
	require.NoError(t, err)
	if identity != nil {
		server, location := proxyconf.NginxBlocks(identity, false, nil)
		text = replaceBlock(t, text, proxyconf.ServerBegin, proxyconf.ServerEnd, server)
		text = replaceBlock(t, text, proxyconf.LocationBegin, proxyconf.LocationEnd, location)
	}
	path := filepath.Join(dir, "nginx.conf")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", path, "-g", "daemon off;")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	// SIGTERM is nginx's fast shutdown: the master stops its workers too. (The default SIGKILL
	// would orphan the workers, which hold the output pipe open.)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out.String(), logs)
		}
	})
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "nginx did not start: %s", out)
	return "http://" + addr, dir
}

func host(u string) string { pu, _ := url.Parse(u); return pu.Host }

// replaceBlock replaces the lines from the one holding begin to the one holding end.
func replaceBlock(t *testing.T, text, begin, end, block string) string {
	t.Helper()
	i, j := strings.Index(text, begin), strings.Index(text, end)
	require.True(t, i >= 0 && j > i, "nginx.conf has the block %q", begin)
	i = strings.LastIndexByte(text[:i], '\n') + 1
	j += len(end) + 1
	return text[:i] + block + text[j:]
}

func TestNginxEnforcesDecisions(t *testing.T) {
	s := startStack(t, "../deploy/policy/demo.yaml")
	base := startNginx(t, s)
	client := &http.Client{Timeout: 10 * time.Second}

	get := func(t *testing.T, path, token string, extra map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", base+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range extra {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, body
	}

	t.Run("no token", func(t *testing.T) {
		resp, body := get(t, "/api/messages", "", nil)
		assert.Equal(t, 401, resp.StatusCode)
		assert.Equal(t, []string{`Bearer realm="api", DPoP algs="ES256 RS256 PS256 EdDSA Ed25519"`}, resp.Header.Values("WWW-Authenticate"),
			"one header carrying both challenges")
		assert.True(t, json.Valid(body), "JSON body: %s", body)
	})
	t.Run("valid token", func(t *testing.T) {
		resp, body := get(t, "/api/messages", s.token(t, "messages:read"), nil)
		require.Equal(t, 200, resp.StatusCode, "%s", body)
		assert.Contains(t, string(body), "Hello, world!")
	})
	t.Run("missing scope is 403 with the challenge", func(t *testing.T) {
		resp, body := get(t, "/api/messages", s.token(t, "messages:write"), nil)
		assert.Equal(t, 403, resp.StatusCode, "%s", body)
		assert.Equal(t, []string{`Bearer realm="api", error="insufficient_scope", error_description="The access token lacks a required scope", scope="messages:read"`},
			resp.Header.Values("WWW-Authenticate"))
	})
	t.Run("secure echoes the subject", func(t *testing.T) {
		resp, body := get(t, "/secure", s.token(t, "messages:read"), nil)
		require.Equal(t, 200, resp.StatusCode, "%s", body)
		var id demoapi.Identity
		require.NoError(t, json.Unmarshal(body, &id))
		assert.Equal(t, "test-client", id.Subject)
	})
	t.Run("wrong audience", func(t *testing.T) {
		resp, _ := get(t, "/api/messages", s.mint(t, map[string]any{"aud": "api://other"}), nil)
		assert.Equal(t, 401, resp.StatusCode)
		assert.Len(t, resp.Header.Values("WWW-Authenticate"), 1)
		assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
		assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "audience")
	})
	t.Run("expired", func(t *testing.T) {
		resp, _ := get(t, "/api/messages", s.mint(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), nil)
		assert.Equal(t, 401, resp.StatusCode)
		assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "expired")
	})
	t.Run("tampered", func(t *testing.T) {
		tok := s.token(t, "messages:read")
		resp, _ := get(t, "/api/messages", tok[:len(tok)-6]+"AAAAAA", nil)
		assert.Equal(t, 401, resp.StatusCode)
	})
	t.Run("spoofed identity never reaches the API", func(t *testing.T) {
		resp, body := get(t, "/secure", s.token(t, "messages:read"), map[string]string{
			"X-Authz-Subject": "spoofed-admin", "X-Authz-User-Id": "spoofed-user", "X-Authz-Scopes": "admin",
		})
		require.Equal(t, 200, resp.StatusCode, "%s", body)
		var id demoapi.Identity
		require.NoError(t, json.Unmarshal(body, &id))
		assert.Equal(t, "test-client", id.Subject)
		assert.Empty(t, id.UserID)
		assert.Equal(t, []string{"messages:read"}, id.Scopes)
	})
	t.Run("spoofed identity without a token is refused", func(t *testing.T) {
		resp, _ := get(t, "/secure", "", map[string]string{"X-Authz-Subject": "spoofed-admin"})
		assert.Equal(t, 401, resp.StatusCode)
	})
	t.Run("healthz needs no token", func(t *testing.T) {
		resp, _ := get(t, "/healthz", "", nil)
		assert.Equal(t, 200, resp.StatusCode)
	})
	t.Run("a client's X-Original-URI is overwritten, its X-Forwarded-Uri dropped", func(t *testing.T) {
		resp, _ := get(t, "/api/messages", s.token(t, "messages:write"), map[string]string{
			"X-Original-URI": "/healthz", "X-Original-Method": "OPTIONS", "X-Forwarded-Uri": "/healthz"})
		assert.Equal(t, 403, resp.StatusCode, "judged as the request nginx names, not as the client's headers say")
	})
}

// TestNginxCarriesRefusals: a request the service refuses to judge (an ambiguous path) gets its
// 400 and challenge through nginx, whose auth_request would make any status but 2xx, 401 and
// 403 a 500. Two Authorization headers nginx refuses itself ("client sent duplicate header
// line"), before asking the service.
func TestNginxCarriesRefusals(t *testing.T) {
	s := startStack(t, "../deploy/policy/demo.yaml")
	base := startNginx(t, s)
	tok := s.token(t, "messages:read")
	for name, tc := range map[string]struct {
		target  string
		header  http.Header
		byNginx bool
	}{
		"encoded slash":             {"/healthz/..%2Fapi/messages", http.Header{"Authorization": {"Bearer " + tok}}, false},
		"double encoding":           {"/api/mes%2573ages", http.Header{"Authorization": {"Bearer " + tok}}, false},
		"two Authorization headers": {"/api/messages", http.Header{"Authorization": {"Basic dXNlcjpwYXNz", "Bearer " + tok}}, true},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := rawRequest(host(base), "GET", tc.target, tc.header)
			require.NoError(t, err)
			assert.Equal(t, 400, resp.StatusCode)
			assert.Empty(t, resp.Header.Get("Retry-After"), "a refusal is not an outage")
			if !tc.byNginx {
				assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`)
			}
		})
	}
}

// TestNginxDPoP: a DPoP-bound token from the dev issuer's token endpoint, used through nginx
// with a proof for each request; the proof replayed, the token as a bearer token, and a proof
// for another URL are refused with DPoP challenges.
func TestNginxDPoP(t *testing.T) {
	s := startStack(t, "../deploy/policy/demo.yaml")
	base := startNginx(t, s)
	key, err := devidp.NewProofKey()
	require.NoError(t, err)
	tok, err := devidp.RequestDPoPToken(context.Background(), http.DefaultClient, s.idp.Issuer(), "test-client", "test-secret", "messages:read", key)
	require.NoError(t, err)
	do := func(auth, proof string) *http.Response {
		h := http.Header{"Authorization": {auth}}
		if proof != "" {
			h.Set("DPoP", proof)
		}
		resp, err := rawRequest(host(base), "GET", "/api/messages?page=1", h)
		require.NoError(t, err)
		return resp
	}
	proofFor := func(uri string) string {
		p, err := devidp.Proof(key, "GET", uri, tok, time.Now())
		require.NoError(t, err)
		return p
	}
	// The request's URI as nginx reports it: its scheme, the Host header (rawRequest sends
	// api.example), the path.
	uri := "http://api.example/api/messages"

	proof := proofFor(uri)
	resp := do("DPoP "+tok, proof)
	assert.Equal(t, 200, resp.StatusCode, "a DPoP-bound token with its proof")

	resp = do("DPoP "+tok, proof)
	assert.Equal(t, 401, resp.StatusCode, "the same proof again")
	assert.Equal(t, []string{`DPoP algs="ES256 RS256 PS256 EdDSA Ed25519", error="invalid_dpop_proof", error_description="The DPoP proof has been used before"`},
		resp.Header.Values("WWW-Authenticate"))

	resp = do("Bearer "+tok, "")
	assert.Equal(t, 401, resp.StatusCode, "a DPoP-bound token as a bearer token")
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `DPoP algs="ES256 RS256 PS256 EdDSA Ed25519", error="invalid_token"`)

	resp = do("DPoP "+tok, proofFor("http://api.example/secure"))
	assert.Equal(t, 401, resp.StatusCode, "a proof for another URL")
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`)

	// Two proofs (nginx passes both lines to the subrequest), and a client's X-Forwarded-Proto
	// claiming https for a proof of an https URL: neither gets through.
	resp, err = rawRequest(host(base), "GET", "/api/messages", http.Header{"Authorization": {"DPoP " + tok},
		"Dpop": {proofFor(uri), proofFor(uri)}})
	require.NoError(t, err)
	assert.Equal(t, 401, resp.StatusCode, "two DPoP headers")
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "more than one DPoP proof")
	resp, err = rawRequest(host(base), "GET", "/api/messages", http.Header{"Authorization": {"DPoP " + tok},
		"Dpop": {proofFor("https://api.example/api/messages")}, "X-Forwarded-Proto": {"https"}})
	require.NoError(t, err)
	assert.Equal(t, 401, resp.StatusCode, "nginx sets X-Forwarded-Proto from the connection, over the client's")
}

// TestNginxKeysNotLoaded: while the service cannot verify (no key set), nginx answers 503 with
// Retry-After, never an allow.
func TestNginxKeysNotLoaded(t *testing.T) {
	s := startStackKeys(t, "", false)
	base := startNginx(t, s)
	req, err := http.NewRequest("GET", base+"/api/messages", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.mint(t, nil))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
}
