package e2e

// Decisions of the authz command against a real ORY Hydra v2.3.0 (issue 22): the service runs
// in process through authzcmd.Main with the flags an operator would write, so the
// --introspection* flags are tested with the rest; it asks Hydra's admin introspection endpoint
// (which needs no client authentication, and which Hydra's discovery does not list). Like
// TestHydraFacts it runs only when HYDRA_BIN names a Hydra binary.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/platformauth/envoy-okta-authz/internal/authzcmd"
	"github.com/platformauth/envoy-okta-authz/internal/testenv"
	"github.com/platformauth/envoy-okta-authz/token"
)

// hydraPolicy needs messages:write to change messages and messages:read to read them: the
// scopes Hydra grants must reach the policy.
const hydraPolicy = `rules:
  - name: write
    match: { path: /api/messages, methods: [POST, PUT, PATCH, DELETE] }
    require: { scopes: [messages:write] }
  - name: read
    match: { path: /api/messages }
    require: { scopes: [messages:read] }
`

// hydraAuthz is the authz command running against Hydra, asked over both front ends.
type hydraAuthz struct {
	httpURL string // the HTTP decision API, judging the request itself (Envoy's http_service)
	admin   string
	check   authv3.AuthorizationClient
	logs    *syncBuffer
}

// startAuthzForHydra runs the authz command for Hydra's issuer with the policy above, opaque
// tokens (and with args, more) introspected at Hydra's admin endpoint without client
// authentication, and waits until it is ready (Hydra's keys loaded).
func startAuthzForHydra(t *testing.T, h *hydra, args ...string) *hydraAuthz {
	t.Helper()
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(policyFile, []byte(hydraPolicy), 0o600))
	grpcAddr, httpAddr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	all := append([]string{
		"--issuer", h.issuer, "--allow-http-issuer", "--audience", hydraAudience, "--policy", policyFile,
		"--introspection-url", h.introspectionURL(), "--introspection-auth", "none",
		"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--admin-addr", admin,
		"--http-request-headers", "envoy", "--shutdown-drain", "0",
	}, args...)
	a := &hydraAuthz{httpURL: "http://" + httpAddr, admin: admin, logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	// No environment: an AUTHZ_* variable of the caller's must not change the flags under test.
	go func() { exited <- authzcmd.Main(ctx, all, func(string) string { return "" }, io.Discard, a.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exited:
			assert.Equal(t, 0, code, "authz exit code")
		case <-time.After(20 * time.Second):
			t.Error("authz did not stop")
		}
		if t.Failed() {
			t.Logf("authz %v log:\n%s", args, a.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second) // Hydra's keys, on a busy two-core machine
	for readyz(a.admin) != http.StatusOK {
		select {
		case code := <-exited:
			t.Fatalf("authz exited with %d before it was ready:\n%s", code, a.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("authz not ready after 30s:\n%s", a.logs.String())
		}
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	a.check = authv3.NewAuthorizationClient(conn)
	return a
}

// readyz is the admin port's /readyz status (0 when it cannot be asked).
func readyz(admin string) int {
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// verdict is one request's decision from both front ends.
type verdict struct {
	status int // HTTP decision API
	header http.Header
	body   []byte
	grpc   *authv3.CheckResponse
}

// decide asks both front ends about `method /api/messages` with the bearer token, and checks
// that they agree: both allow, or both deny with the same HTTP status.
func (a *hydraAuthz) decide(t *testing.T, method, tok string) verdict {
	t.Helper()
	status, header, body, err := a.ask(method, tok)
	require.NoError(t, err)
	resp, err := a.check.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Host: "api.example.com", Path: "/api/messages", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{":method": method, ":path": "/api/messages", ":authority": "api.example.com",
				":scheme": "https", "authorization": "Bearer " + tok},
		}},
	}})
	require.NoError(t, err, "a decision is a CheckResponse, never a gRPC error")
	if status == http.StatusOK {
		assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode(), "HTTP allowed, gRPC: %v", resp.GetStatus())
	} else {
		assert.Equal(t, int32(status), int32(resp.GetDeniedResponse().GetStatus().GetCode()),
			"HTTP %d, gRPC denial status (%v)", status, resp.GetStatus())
	}
	return verdict{status: status, header: header, body: body, grpc: resp}
}

// ask is the HTTP decision API's answer, with no assertions (polling calls it).
func (a *hydraAuthz) ask(method, tok string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, a.httpURL+"/api/messages", nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

// eventuallyStatus polls until the HTTP decision API answers want for the token: a revocation
// takes effect when the cached answer's TTL has passed, not at a moment the test can name.
func (a *hydraAuthz) eventuallyStatus(t *testing.T, method, tok string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, _, body, err := a.ask(method, tok)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want HTTP %d within %s; the last answer was %d %s (%v)", want, within, got, body, err)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval; the deadline above is the test
	}
}

// assertAllowed checks an allow and the identity both front ends forward.
func assertAllowed(t *testing.T, v verdict, sub, clientID, scopes string) {
	t.Helper()
	require.Equal(t, http.StatusOK, v.status, "HTTP answer %s", v.body)
	require.Equal(t, int32(codes.OK), v.grpc.GetStatus().GetCode(), "gRPC %v", v.grpc.GetStatus())
	want := map[string]string{"x-authz-subject": sub, "x-authz-client-id": clientID, "x-authz-scopes": scopes}
	upstream := map[string]string{}
	for _, h := range v.grpc.GetOkResponse().GetHeaders() {
		upstream[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	for name, value := range want {
		assert.Equal(t, value, v.header.Get(name), "HTTP %s", name)
		assert.Equal(t, value, upstream[name], "gRPC %s", name)
	}
	assert.Empty(t, v.header.Get("x-authz-user-id"), "Hydra's tokens carry no uid")
	claims := decodeClaimsHeader(t, v.header.Get("x-authz-claims"))
	assert.Equal(t, clientID, claims["client_id"], "x-authz-claims: %v", claims)
	assert.Equal(t, upstream["x-authz-claims"], v.header.Get("x-authz-claims"), "both front ends forward the same claims")
}

// decodeClaimsHeader reads x-authz-claims: base64url JSON.
func decodeClaimsHeader(t *testing.T, h string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(h)
	require.NoError(t, err, "x-authz-claims %q", h)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m), "x-authz-claims %s", raw)
	return m
}

// assertRefused checks a refusal for reason: the HTTP status, challenge and body, and the
// reason code the gRPC front end names.
func assertRefused(t *testing.T, v verdict, status int, reason *token.Reason) {
	t.Helper()
	require.Equal(t, status, v.status, "HTTP answer %s", v.body)
	assert.Equal(t, reason.Code, v.grpc.GetStatus().GetMessage(), "gRPC reason")
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	require.NoError(t, json.Unmarshal(v.body, &body), "body %s", v.body)
	assert.Equal(t, reason.Description, body.Description, "body %s", v.body)
	switch status {
	case http.StatusUnauthorized:
		assert.Equal(t, int32(codes.Unauthenticated), v.grpc.GetStatus().GetCode())
		assert.Equal(t, "invalid_token", body.Error)
		assert.Contains(t, v.header.Get("WWW-Authenticate"), `error="invalid_token"`)
	case http.StatusServiceUnavailable:
		// Cannot tell: the client must retry, not drop its token.
		assert.Equal(t, int32(codes.Unavailable), v.grpc.GetStatus().GetCode())
		assert.NotEmpty(t, v.header.Get("Retry-After"), "503 says when to retry")
		assert.NotContains(t, v.header.Get("WWW-Authenticate"), "invalid_token", "a 503 never calls the token bad")
	}
}

// introspectionCalls sums the service's authz_introspection_calls_total over its results.
func introspectionCalls(t *testing.T, admin string) float64 {
	t.Helper()
	return metricSum(t, admin, "authz_introspection_calls_total{")
}

// metricSum adds the values of the metric lines that start with prefix.
func metricSum(t *testing.T, admin, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var sum float64
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, "metric line %q", line)
		sum += f
	}
	return sum
}

// forge changes one character in the middle of a JWS's signature: a token Hydra never signed.
func forge(t *testing.T, jwt string) string {
	t.Helper()
	i := strings.LastIndexByte(jwt, '.') + 10
	require.Less(t, i, len(jwt)-2, "a signature to change")
	c := byte('A')
	if jwt[i] == 'A' {
		c = 'B'
	}
	return jwt[:i] + string(c) + jwt[i+1:]
}

// TestHydraDecisions: Hydra's opaque tokens are allowed with their identity and scopes and
// refused once revoked (after the cache TTL); its JWTs, under --introspection always, are
// verified locally first and refused once revoked; and Hydra's outage is a 503, never an allow.
func TestHydraDecisions(t *testing.T) {
	h := startHydra(t)
	opaqueID, opaqueSecret := h.createClient(t, true)
	jwtID, jwtSecret := h.createClient(t, false)

	// Three services: opaque tokens with answers reused for an hour (the revocation window made
	// visible), opaque with a second's reuse, and every token introspected with a second's.
	const shortTTL = time.Second
	cached := startAuthzForHydra(t, h, "--introspection", "opaque", "--introspection-cache-ttl", "1h")
	opaque := startAuthzForHydra(t, h, "--introspection", "opaque", "--introspection-cache-ttl", shortTTL.String())
	always := startAuthzForHydra(t, h, "--introspection", "always", "--introspection-cache-ttl", shortTTL.String())
	// Revocation has taken effect well within this (the TTL, then one call to Hydra).
	revokedWithin := shortTTL + 15*time.Second

	var tokens []string // none of which may ever appear in a log
	issue := func(id, secret, scope string) string {
		tok := h.token(t, id, secret, scope)
		tokens = append(tokens, tok)
		return tok
	}
	readTok := issue(opaqueID, opaqueSecret, "messages:read")
	require.True(t, strings.HasPrefix(readTok, "ory_at_"), "an opaque Hydra token: %q", readTok)

	t.Run("opaque token: allowed with its identity, its scopes checked on every request", func(t *testing.T) {
		for _, a := range []*hydraAuthz{cached, opaque, always} {
			assertAllowed(t, a.decide(t, http.MethodGet, readTok), opaqueID, opaqueID, "messages:read")
			// The answer is cached now; the route's policy still runs on it.
			v := a.decide(t, http.MethodPost, readTok)
			require.Equal(t, http.StatusForbidden, v.status, "POST with messages:read only: %s", v.body)
			assert.Equal(t, int32(codes.PermissionDenied), v.grpc.GetStatus().GetCode())
			assert.Contains(t, v.header.Get("WWW-Authenticate"), `error="insufficient_scope"`)
			assert.Contains(t, v.header.Get("WWW-Authenticate"), `scope="messages:write"`)
		}
		assert.Positive(t, metricSum(t, cached.admin, `authz_introspection_cache_total{issuer="default",result="hit"}`),
			"the second request was answered from the cache")

		both := issue(opaqueID, opaqueSecret, "messages:read messages:write")
		assertAllowed(t, cached.decide(t, http.MethodPost, both), opaqueID, opaqueID, "messages:read messages:write")
		assertAllowed(t, cached.decide(t, http.MethodGet, both), opaqueID, opaqueID, "messages:read messages:write")
	})

	t.Run("a token Hydra never issued is inactive", func(t *testing.T) {
		for _, tok := range []string{"ory_at_" + strings.Repeat("A", 43) + "." + strings.Repeat("B", 43), "not-a-jwt"} {
			assertRefused(t, opaque.decide(t, http.MethodGet, tok), http.StatusUnauthorized, token.ErrTokenInactive)
		}
	})

	t.Run("opaque token revoked at Hydra: refused after the cache TTL", func(t *testing.T) {
		tok := issue(opaqueID, opaqueSecret, "messages:read")
		for _, a := range []*hydraAuthz{cached, opaque} {
			assertAllowed(t, a.decide(t, http.MethodGet, tok), opaqueID, opaqueID, "messages:read")
		}
		h.revoke(t, opaqueID, opaqueSecret, tok)
		_, said := h.introspectRaw(t, tok)
		require.Equal(t, inactive+"\n", string(said), "Hydra says the token is revoked")

		opaque.eventuallyStatus(t, http.MethodGet, tok, http.StatusUnauthorized, revokedWithin)
		assertRefused(t, opaque.decide(t, http.MethodGet, tok), http.StatusUnauthorized, token.ErrTokenInactive)
		// The other service reuses Hydra's answer for an hour: the revocation window the cache
		// TTL sets, which is why it is a setting.
		assertAllowed(t, cached.decide(t, http.MethodGet, tok), opaqueID, opaqueID, "messages:read")
	})

	t.Run("JWT under always: verified locally, then introspected, refused once revoked", func(t *testing.T) {
		jwt := issue(jwtID, jwtSecret, "messages:read")
		_, _, isJWS := compactJWS(jwt)
		require.True(t, isJWS, "a JWT-strategy token: %q", jwt)

		before := introspectionCalls(t, always.admin)
		assertAllowed(t, always.decide(t, http.MethodGet, jwt), jwtID, jwtID, "messages:read")
		assert.Greater(t, introspectionCalls(t, always.admin), before, "the JWT was introspected")

		// A JWT whose signature does not verify is refused locally: Hydra is not asked.
		before = introspectionCalls(t, always.admin)
		assertRefused(t, always.decide(t, http.MethodGet, forge(t, jwt)), http.StatusUnauthorized, token.ErrSignature)
		assert.Equal(t, before, introspectionCalls(t, always.admin), "a forged JWT never reaches the introspection endpoint")

		// Under opaque, the same JWT is verified locally only.
		before = introspectionCalls(t, opaque.admin)
		assertAllowed(t, opaque.decide(t, http.MethodGet, jwt), jwtID, jwtID, "messages:read")
		assert.Equal(t, before, introspectionCalls(t, opaque.admin), "under opaque a JWT is not introspected")

		h.revoke(t, jwtID, jwtSecret, jwt)
		always.eventuallyStatus(t, http.MethodGet, jwt, http.StatusUnauthorized, revokedWithin)
		assertRefused(t, always.decide(t, http.MethodGet, jwt), http.StatusUnauthorized, token.ErrTokenInactive)
		assertAllowed(t, opaque.decide(t, http.MethodGet, jwt), jwtID, jwtID, "messages:read")
	})

	t.Run("Hydra down: 503 introspection_unavailable, never an allow", func(t *testing.T) {
		// Issued while Hydra is up, never shown to the services: nothing of them is cached.
		unseenOpaque := issue(opaqueID, opaqueSecret, "messages:read")
		unseenJWT := issue(jwtID, jwtSecret, "messages:read")
		h.stop()
		_, err := http.Get(h.adminURL + "/health/ready")
		require.Error(t, err, "Hydra is down")

		for _, a := range []*hydraAuthz{opaque, always} {
			// Past the circuit breaker's threshold (5 failures): still 503, never an allow.
			for range 8 {
				assertRefused(t, a.decide(t, http.MethodGet, unseenOpaque), http.StatusServiceUnavailable, token.ErrIntrospectionUnavailable)
			}
		}
		assertRefused(t, always.decide(t, http.MethodGet, unseenJWT), http.StatusServiceUnavailable, token.ErrIntrospectionUnavailable)

		// A JWT needs no call under opaque: it is still judged from the keys already loaded,
		// and the service stays ready.
		assertAllowed(t, opaque.decide(t, http.MethodGet, unseenJWT), jwtID, jwtID, "messages:read")
		for _, a := range []*hydraAuthz{cached, opaque, always} {
			assert.Equal(t, http.StatusOK, readyz(a.admin), "readiness does not depend on the introspection endpoint")
		}
	})

	for _, a := range []*hydraAuthz{cached, opaque, always} {
		logs := a.logs.String()
		for _, tok := range tokens {
			assert.NotContains(t, logs, tok, "a token in the log")
		}
	}
}
