package envoy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	authzpkg "github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/envoy/envoytest"
	"github.com/platformauth/envoy-okta-authz/grpcapi"
	"github.com/platformauth/envoy-okta-authz/httpapi"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// These tests run the shipped configurations' behaviour through envoytest, which plays Envoy
// v1.38 from its source, against the real authz front ends: what the comments in envoy.yaml
// and envoy-http.yaml promise is what Envoy would do.

// authzService is the authz service as the stack runs it, with the demo policy: its HTTP
// decision API (as envoy-http.yaml asks it) and a gRPC client of its Check.
type authzService struct {
	idp     *devidp.Server
	httpURL string
	check   authv3.AuthorizationClient
}

func startAuthz(t *testing.T, keysLoaded bool) *authzService {
	t.Helper()
	idp, _ := devidptest.Start(t, devidp.Config{})
	opts := jwks.Options{Issuer: idp.Issuer(), Algs: []string{"RS256"}, AllowHTTP: true}
	if !keysLoaded {
		opts.JWKSURL = "http://127.0.0.1:1/keys"
	}
	keys, err := jwks.New(opts)
	require.NoError(t, err)
	if keysLoaded {
		require.NoError(t, keys.Refresh(context.Background()))
	}
	v, err := token.NewVerifier(token.VerifierConfig{Issuers: []token.Issuer{
		{URL: idp.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: keys}}})
	require.NoError(t, err)
	data, err := os.ReadFile("../deploy/policy/demo.yaml")
	require.NoError(t, err)
	pol, err := policy.Load(data, []string{"default"})
	require.NoError(t, err)
	az := authzpkg.NewAuthorizer(v, authzpkg.Options{Policy: pol})

	// As the README runs it behind envoy-http.yaml: --http-path-prefix /authz --http-request-headers envoy.
	srv := httptest.NewServer(httpapi.New(az, httpapi.Options{PathPrefix: "/authz", Source: httpapi.SourceEnvoy}))
	t.Cleanup(srv.Close)

	l := bufconn.Listen(1 << 20)
	check := grpcapi.New(az)
	gs := grpc.NewServer(check.ServerOptions()...)
	authv3.RegisterAuthorizationServer(gs, check)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &authzService{idp: idp, httpURL: srv.URL, check: authv3.NewAuthorizationClient(conn)}
}

func (s *authzService) token(t *testing.T, scopes ...string) string {
	t.Helper()
	tok, err := s.idp.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: scopes})
	require.NoError(t, err)
	return tok
}

// outcome is what one client request became: forwarded upstream with these headers, or a
// local reply; and the dynamic metadata Envoy recorded for its access log.
type outcome struct {
	upstream http.Header
	// path is the upstream request's :path (gRPC: after the allow's query parameter changes).
	path     string
	reply    *envoytest.LocalReply
	metadata map[string]string
}

// viaHTTP sends a client request through envoy-http.yaml's ext_authz (http_service).
func (s *authzService) viaHTTP(t *testing.T, p *envoytest.Proxy, method, path string, header http.Header) outcome {
	t.Helper()
	path, ok := p.NormalisePath(path)
	require.True(t, ok)
	sr := p.HTTPServiceRequest(method, path, "api.example", header)
	req, err := http.NewRequest(sr.Method, s.httpURL, nil)
	require.NoError(t, err)
	req.URL.Opaque = sr.Target
	req.Host = sr.Host
	req.Header = sr.Header
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	upstream := header.Clone()
	reply, err := p.ApplyHTTPServiceAnswer(upstream, resp.StatusCode, resp.Header, string(body))
	require.NoError(t, err)
	out := outcome{reply: reply, upstream: upstream, metadata: map[string]string{}}
	if reply != nil {
		out.upstream = nil
	}
	for k, v := range p.DynamicMetadataFromHeaders(resp.Header) {
		out.metadata[k] = v
	}
	return out
}

// viaGRPC sends a client request through envoy.yaml's ext_authz (gRPC Check).
func (s *authzService) viaGRPC(t *testing.T, p *envoytest.Proxy, method, path string, header http.Header) outcome {
	t.Helper()
	path, ok := p.NormalisePath(path)
	require.True(t, ok)
	pr, err := envoytest.PerRoute(p.Route(path))
	require.NoError(t, err)
	hs := map[string]string{":method": method, ":path": path, ":authority": "api.example"}
	for k, vs := range header {
		hs[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	resp, callErr := s.check.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "api.example", Headers: hs}},
		ContextExtensions: pr.GetCheckSettings().GetContextExtensions(),
	}})
	upstream := header.Clone()
	reply, err := p.ApplyCheckResponse(upstream, resp, callErr)
	require.NoError(t, err)
	out := outcome{reply: reply, upstream: upstream, metadata: map[string]string{},
		path: envoytest.UpstreamPath(path, resp.GetOkResponse())}
	if reply != nil {
		out.upstream = nil
	}
	for k, v := range resp.GetDynamicMetadata().AsMap() {
		out.metadata[k], _ = v.(string)
	}
	return out
}

// via returns the way a request goes through config: gRPC for envoy.yaml, HTTP for envoy-http.yaml.
func (s *authzService) via(config string) func(*testing.T, *envoytest.Proxy, string, string, http.Header) outcome {
	if config == "envoy-http.yaml" {
		return s.viaHTTP
	}
	return s.viaGRPC
}

func load(t *testing.T, path string) *envoytest.Proxy {
	t.Helper()
	p, err := envoytest.Load(path)
	require.NoError(t, err)
	return p
}

// TestHTTPModeNeverPassesAClientIdentityHeader: envoy-http.yaml lets the service see a
// client's x-authz-* headers, so it names them for removal — x-authz-user-id included, which a
// client-credentials token (no uid) leaves unset.
func TestHTTPModeNeverPassesAClientIdentityHeader(t *testing.T) {
	s := startAuthz(t, true)
	p := load(t, "envoy-http.yaml")
	h := http.Header{"Authorization": {"Bearer " + s.token(t, "messages:read")},
		"X-Authz-User-Id": {"spoofed"}, "X-Authz-Subject": {"spoofed"}, "X-Authz-Role": {"admin"}}
	out := s.viaHTTP(t, p, "GET", "/secure", h)
	require.Nil(t, out.reply)
	assert.Equal(t, "test-client", out.upstream.Get("X-Authz-Subject"))
	assert.Empty(t, out.upstream.Values("X-Authz-User-Id"), "no uid in the token: the client's copy is removed")
	assert.Empty(t, out.upstream.Values("X-Authz-Role"))
}

// TestHTTPModeServiceSeesOnlyNamedHeaders: a header allowed_headers does not name never
// reaches the service, so a client cannot choose the request it judges.
func TestHTTPModeServiceSeesOnlyNamedHeaders(t *testing.T) {
	p := load(t, "envoy-http.yaml")
	assert.Nil(t, p.ExtAuthz.GetHttpService().GetAuthorizationRequest().GetAllowedHeaders(),
		"the deprecated authorization_request.allowed_headers is not used (ExtAuthz.allowed_headers is)")
	sr := p.HTTPServiceRequest("GET", "/api/messages", "api.example", http.Header{
		"Authorization": {"Bearer x"}, "X-Original-Uri": {"/healthz"}, "X-Forwarded-Uri": {"/healthz"},
		"Cookie": {"session=1"}, "X-Request-Id": {"r1"}})
	assert.Equal(t, "/authz/api/messages", sr.Target)
	assert.Equal(t, "Bearer x", sr.Header.Get("Authorization"))
	assert.Equal(t, "r1", sr.Header.Get("X-Request-Id"))
	for _, k := range []string{"X-Original-Uri", "X-Forwarded-Uri", "Cookie"} {
		assert.Empty(t, sr.Header.Values(k), "%s must not reach the service", k)
	}
}

// TestDenialsReachTheClientWhole: status, challenge, JSON body and Cache-Control, in both modes.
func TestDenialsReachTheClientWhole(t *testing.T) {
	s := startAuthz(t, true)
	writer := s.token(t, "messages:write")
	for _, mode := range []string{"envoy.yaml", "envoy-http.yaml"} {
		p, via := load(t, mode), s.via(mode)
		for _, tc := range []struct {
			name, path, auth string
			status           int
			challenge        string
		}{
			{"no token", "/api/messages", "", 401, `Bearer realm="api"`},
			{"bad token", "/api/messages", "Bearer x.y.z", 401, `error="invalid_token"`},
			{"missing scope", "/api/messages", "Bearer " + writer, 403, `error="insufficient_scope"`},
			{"two Authorization headers", "/api/messages", "Basic eA==,Bearer " + writer, 400, `error="invalid_request"`},
		} {
			t.Run(mode+" "+tc.name, func(t *testing.T) {
				h := http.Header{}
				if tc.auth != "" {
					h.Set("Authorization", tc.auth)
				}
				out := via(t, p, "GET", tc.path, h)
				require.NotNil(t, out.reply, "denied")
				assert.Equal(t, tc.status, out.reply.Status)
				assert.Len(t, out.reply.Header.Values("Www-Authenticate"), 1)
				assert.Contains(t, out.reply.Header.Get("Www-Authenticate"), tc.challenge)
				assert.Equal(t, "no-store", out.reply.Header.Get("Cache-Control"))
				assert.Equal(t, "application/json", out.reply.Header.Get("Content-Type"))
				assert.True(t, json.Valid([]byte(out.reply.Body)), "JSON body: %q", out.reply.Body)
			})
		}
	}
}

// TestUnavailableCarriesRetryAfter: while the service has no keys (its 503) or cannot be
// reached, the client gets 503 with Retry-After and a JSON body in both modes, though in HTTP
// mode Envoy itself turns any 5xx into a bare status_on_error reply.
func TestUnavailableCarriesRetryAfter(t *testing.T) {
	s := startAuthz(t, false)
	tok := s.token(t, "messages:read")
	for _, mode := range []string{"envoy.yaml", "envoy-http.yaml"} {
		p, via := load(t, mode), s.via(mode)
		out := via(t, p, "GET", "/api/messages", http.Header{"Authorization": {"Bearer " + tok}})
		require.NotNil(t, out.reply, mode)
		assert.Equal(t, 503, out.reply.Status, mode)
		assert.Equal(t, "5", out.reply.Header.Get("Retry-After"), mode)
		assert.Equal(t, "no-store", out.reply.Header.Get("Cache-Control"), mode)
		assert.Contains(t, out.reply.Body, "temporarily_unavailable", mode)
	}
	// The service unreachable: a gRPC error.
	p := load(t, "envoy.yaml")
	reply, err := p.ApplyCheckResponse(http.Header{}, nil, context.DeadlineExceeded)
	require.NoError(t, err)
	assert.Equal(t, 503, reply.Status)
	assert.Equal(t, "5", reply.Header.Get("Retry-After"))
}

// TestAccessLogFieldsAreFilled: every DYNAMIC_METADATA key the access log names is one the
// service sets, in both modes.
func TestAccessLogFieldsAreFilled(t *testing.T) {
	s := startAuthz(t, true)
	keyRE := regexp.MustCompile(`DYNAMIC_METADATA\(envoy\.filters\.http\.ext_authz:([^)]+)\)`)
	for _, mode := range []string{"envoy.yaml", "envoy-http.yaml"} {
		p, via := load(t, mode), s.via(mode)
		var keys []string
		for _, m := range keyRE.FindAllStringSubmatch(p.HCM.GetAccessLog()[0].GetTypedConfig().String(), -1) {
			keys = append(keys, m[1])
		}
		require.NotEmpty(t, keys, mode)
		allowed := via(t, p, "GET", "/api/messages", http.Header{"Authorization": {"Bearer " + s.token(t, "messages:read")}})
		denied := via(t, p, "GET", "/api/messages", http.Header{"Authorization": {"Bearer x.y.z"}})
		for _, k := range keys {
			if strings.Contains(k, "reason") {
				assert.NotEmpty(t, denied.metadata[k], "%s: %s on a denial", mode, k)
				continue
			}
			assert.NotEmpty(t, allowed.metadata[k], "%s: %s on an allow (metadata %v)", mode, k, allowed.metadata)
		}
		assert.Equal(t, "allow", allowed.metadata["decision"]+allowed.metadata["x-decision"], mode)
	}
}

// TestDenialHeadersAreNeverAppended: Envoy drops a denial header whose append flag is true
// (only the "set" list reaches the client), so none of the service's may have it.
func TestDenialHeadersAreNeverAppended(t *testing.T) {
	s := startAuthz(t, true)
	for _, auth := range []string{"", "Bearer x.y.z", "Bearer " + s.token(t, "messages:write"), "Bearer a, Bearer b"} {
		h := map[string]string{":path": "/api/messages"}
		if auth != "" {
			h["authorization"] = auth
		}
		resp, err := s.check.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/messages", Headers: h}},
			ContextExtensions: map[string]string{"policy": "messages"}}})
		require.NoError(t, err)
		d := resp.GetDeniedResponse()
		require.NotNil(t, d)
		for _, hv := range d.GetHeaders() {
			assert.False(t, hv.GetAppend().GetValue(), "%s: header %s would be dropped by Envoy", auth, hv.GetHeader().GetKey())
		}
		reply, err := load(t, "envoy.yaml").ApplyCheckResponse(http.Header{}, resp, nil)
		require.NoError(t, err)
		assert.Len(t, reply.Header, len(d.GetHeaders()), "every denial header reaches the client")
	}
}

// TestValidatedAgainstTheEnvoyComposeRuns: the schema the configs are validated against
// (go-control-plane's Envoy API) is the Envoy release line docker-compose.yml runs.
func TestValidatedAgainstTheEnvoyComposeRuns(t *testing.T) {
	gomod, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^\s*github\.com/envoyproxy/go-control-plane/envoy (v(\d+\.\d+)\.\d+)\s*$`).FindStringSubmatch(string(gomod))
	require.NotNil(t, m, "go.mod requires a release of go-control-plane/envoy, not a pseudo-version")
	api := m[1]
	m = m[1:]
	envoySvc, err := loadCompose(t, nil).GetService("envoy")
	require.NoError(t, err)
	assert.Equal(t, "envoyproxy/envoy:v"+m[1]+"-latest", envoySvc.Image,
		"compose runs the Envoy release line whose API validates envoy/*.yaml (go-control-plane/envoy %s)", api)
}

// TestRateLimitPerVerifiedClient: envoy-ratelimit.yaml's descriptor reads ext_authz's dynamic
// metadata at a key the service sets on every allow (cid), and the rate limit filter runs after
// ext_authz.
func TestRateLimitPerVerifiedClient(t *testing.T) {
	p := load(t, "envoy-ratelimit.yaml")
	var names []string
	for _, f := range p.HCM.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	assert.Equal(t, []string{"envoy.filters.http.ext_authz", "envoy.filters.http.local_ratelimit", "envoy.filters.http.router"}, names)
	route := p.Route("/api/messages")
	require.NotNil(t, route)
	actions := route.GetRoute().GetRateLimits()[0].GetActions()
	md := actions[0].GetMetadata()
	require.NotNil(t, md, "a metadata action")
	assert.Equal(t, "envoy.filters.http.ext_authz", md.GetMetadataKey().GetKey())
	assert.Equal(t, corev3.HttpProtocolOptions_DROP_HEADER, p.HCM.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction())
	key := md.GetMetadataKey().GetPath()[0].GetKey()

	s := startAuthz(t, true)
	out := s.viaGRPC(t, load(t, "envoy.yaml"), "GET", "/api/messages", http.Header{"Authorization": {"Bearer " + s.token(t, "messages:read")}})
	require.Nil(t, out.reply)
	assert.Equal(t, "test-client", out.metadata[key], "the service sets %q on allow", key)
}

// TestWebSocketTokenFromTheQueryNeverReachesTheUpstream: the demo policy's events route takes
// its token from the query (a browser's WebSocket cannot set Authorization); through envoy.yaml
// the upstream request has no access_token, the query rebuilt as Envoy rebuilds it, and the
// access log's path holds no query at all.
func TestWebSocketTokenFromTheQueryNeverReachesTheUpstream(t *testing.T) {
	s := startAuthz(t, true)
	p := load(t, "envoy.yaml")
	tok := s.token(t, "messages:read")
	h := http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Cookie": {"theme=dark"}}
	out := s.viaGRPC(t, p, "GET", "/api/events?room=7&access_token="+tok+"&lang", h)
	require.Nil(t, out.reply, "allowed")
	assert.Equal(t, "/api/events?lang=&room=7", out.path, "Envoy rebuilds the query: sorted, name=value")
	assert.Equal(t, "theme=dark", out.upstream.Get("Cookie"), "the other credentials' places are untouched")
	assert.Equal(t, "test-client", out.upstream.Get("X-Authz-Subject"))
	assert.Equal(t, "events", out.metadata["rule"])

	out = s.viaGRPC(t, p, "GET", "/api/events?access_token="+tok, http.Header{"Authorization": {"Bearer " + tok}})
	require.NotNil(t, out.reply)
	assert.Equal(t, 400, out.reply.Status, "a token in two places")

	out = s.viaGRPC(t, p, "GET", "/api/messages?access_token="+tok, nil)
	require.NotNil(t, out.reply)
	assert.Equal(t, 401, out.reply.Status, "only the events route reads the query")
}

// TestStepUpChallengeReachesTheClient: the demo policy's settings route asks for a second factor
// in the last 10 minutes; in both modes the client gets the 401 with the RFC 9470 challenge, and
// a token from such a sign-in passes.
func TestStepUpChallengeReachesTheClient(t *testing.T) {
	s := startAuthz(t, true)
	weak := s.token(t, "messages:read")
	strong, err := s.idp.Mint(devidp.TokenRequest{ClientID: "test-client", Extra: map[string]any{
		"acr": "urn:okta:loa:2fa:any", "auth_time": time.Now().Add(-time.Minute).Unix()}})
	require.NoError(t, err)
	for _, mode := range []string{"envoy.yaml", "envoy-http.yaml"} {
		p, via := load(t, mode), s.via(mode)
		out := via(t, p, "GET", "/api/settings", http.Header{"Authorization": {"Bearer " + weak}})
		require.NotNil(t, out.reply, mode)
		assert.Equal(t, 401, out.reply.Status, mode)
		assert.Equal(t, []string{`Bearer realm="api", error="insufficient_user_authentication", error_description="A stronger authentication is required for this resource", acr_values="urn:okta:loa:2fa:any urn:okta:loa:2fa:any:ifpossible", max_age=600`},
			out.reply.Header.Values("Www-Authenticate"), mode)
		out = via(t, p, "GET", "/api/settings", http.Header{"Authorization": {"Bearer " + strong}})
		assert.Nil(t, out.reply, mode)
	}
}
