package grpcapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

var update = flag.Bool("update", false, "rewrite golden files")

// dialCheck serves a's gRPC front end over bufconn and returns a real gRPC client for it.
func dialCheck(t *testing.T, a *authz.Authorizer) authv3.AuthorizationClient {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	srv := New(a)
	s := grpc.NewServer(srv.ServerOptions()...)
	authv3.RegisterAuthorizationServer(s, srv)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// checkRequest builds what Envoy sends, with headers in the joined map or, with raw set, in
// header_map as encode_raw_headers does.
func checkRequest(path string, headers map[string]string, raw bool) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "api.example", Path: path, Scheme: "https"}
	all := map[string]string{":method": "GET", ":path": path, ":authority": "api.example"}
	for k, v := range headers {
		all[k] = v
	}
	if raw {
		h.HeaderMap = &corev3.HeaderMap{}
		for k, v := range all {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
	} else {
		h.Headers = all
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: h},
		ContextExtensions: map[string]string{"policy": "messages"},
	}}
}

func TestCheckOverGRPC(t *testing.T) {
	e := newEnv(t, nil)
	client := dialCheck(t, e.az)
	token := e.mint(t, map[string]any{"jti": "AT.golden", "uid": "00u-user"})

	for _, raw := range []bool{false, true} {
		name := "headers"
		if raw {
			name = "header_map"
		}
		t.Run(name, func(t *testing.T) {
			resp, err := client.Check(context.Background(), checkRequest("/api/messages?x=1", map[string]string{
				"authorization":   "Bearer " + token,
				"x-authz-subject": "spoofed",
				"x-authz-extra":   "spoofed",
			}, raw))
			require.NoError(t, err)
			assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
			ok := resp.GetOkResponse()
			require.NotNil(t, ok, "an allow carries an OkHttpResponse")
			got := map[string]string{}
			for _, h := range ok.GetHeaders() {
				assert.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, h.GetAppendAction())
				assert.Nil(t, h.GetAppend(), "the deprecated append field stays unset")
				got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			assert.Equal(t, "test-client", got[policy.HeaderSubject], "identity overwrites the spoofed copy")
			assert.Equal(t, "test-client", got[policy.HeaderClientID])
			assert.Equal(t, "00u-user", got[policy.HeaderUserID])
			assert.Equal(t, "messages:read", got[policy.HeaderScopes])
			claims, err := base64.RawURLEncoding.DecodeString(got[policy.HeaderClaims])
			require.NoError(t, err)
			var m map[string]any
			require.NoError(t, json.Unmarshal(claims, &m))
			assert.Equal(t, "AT.golden", m["jti"])
			assert.Equal(t, []string{"x-authz-extra", "authorization", "dpop"}, ok.GetHeadersToRemove())
		})
	}
}

func TestCheckDenialsOverGRPC(t *testing.T) {
	e := newEnv(t, nil)
	client := dialCheck(t, e.az)
	tests := []struct {
		name       string
		headers    map[string]string
		raw        bool
		wantCode   codes.Code
		wantStatus int32
		wantWWW    string
	}{
		{"no token", nil, false, codes.Unauthenticated, 401, `Bearer realm="api"`},
		{"basic", map[string]string{"authorization": "Basic dTpw"}, false, codes.Unauthenticated, 401, `Bearer realm="api"`},
		{"garbage", map[string]string{"authorization": "Bearer x.y.z"}, false, codes.Unauthenticated, 401,
			`Bearer realm="api", error="invalid_token", error_description="The access token is malformed"`},
		{"expired (header_map)", map[string]string{"authorization": "Bearer " + e.mint(t, map[string]any{"exp": t0.Add(-5 * time.Minute).Unix()})}, true,
			codes.Unauthenticated, 401, `Bearer realm="api", error="invalid_token", error_description="The access token expired"`},
		{"token in query only", nil, false, codes.Unauthenticated, 401, `Bearer realm="api"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/api/messages"
			if tt.name == "token in query only" {
				path += "?access_token=" + e.mint(t, nil)
			}
			resp, err := client.Check(context.Background(), checkRequest(path, tt.headers, tt.raw))
			require.NoError(t, err, "a denial is a response, not a gRPC error")
			assert.Equal(t, int32(tt.wantCode), resp.GetStatus().GetCode())
			d := resp.GetDeniedResponse()
			require.NotNil(t, d)
			assert.Equal(t, tt.wantStatus, int32(d.GetStatus().GetCode()))
			assert.Equal(t, tt.wantWWW, headerValue(d.GetHeaders(), "www-authenticate"))
			assert.Equal(t, "application/json", headerValue(d.GetHeaders(), "content-type"))
			assert.True(t, json.Valid([]byte(d.GetBody())), "body %q is JSON", d.GetBody())
		})
	}
}

func TestCheckEmptyRequestIsDenied(t *testing.T) {
	e := newEnv(t, nil)
	client := dialCheck(t, e.az)
	resp, err := client.Check(context.Background(), &authv3.CheckRequest{})
	require.NoError(t, err)
	// No path: no rule can judge it.
	assert.Equal(t, int32(codes.InvalidArgument), resp.GetStatus().GetCode())
	assert.Equal(t, int32(400), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
}

func TestCheckUnavailableBeforeKeysLoad(t *testing.T) {
	keys, err := jwks.New(jwks.Options{JWKSURL: "https://idp.invalid/keys", Algs: []string{"RS256"}})
	require.NoError(t, err)
	v, err := token.NewVerifier(token.VerifierConfig{Issuers: []token.Issuer{{URL: "https://idp.invalid", Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: keys}}})
	require.NoError(t, err)
	e := newEnv(t, nil)
	client := dialCheck(t, authz.NewAuthorizer(v, authz.Options{}))
	tok := e.mint(t, map[string]any{"iss": "https://idp.invalid"})
	resp, err := client.Check(context.Background(), checkRequest("/", map[string]string{"authorization": "Bearer " + tok}, false))
	require.NoError(t, err)
	assert.Equal(t, int32(codes.Unavailable), resp.GetStatus().GetCode())
	assert.Equal(t, int32(503), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
	assert.Equal(t, authz.RetryAfterSeconds, headerValue(resp.GetDeniedResponse().GetHeaders(), "retry-after"))
}

// TestResponseGolden pins the exact shape of allow and deny responses.
func TestResponseGolden(t *testing.T) {
	e := newEnv(t, nil)
	unloaded, err := jwks.New(jwks.Options{JWKSURL: "https://idp.invalid/keys", Algs: []string{"RS256"}})
	require.NoError(t, err)
	vUnloaded, err := token.NewVerifier(token.VerifierConfig{Issuers: []token.Issuer{{URL: "ISSUER", Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: unloaded}}})
	require.NoError(t, err)
	tok := e.mint(t, map[string]any{"jti": "AT.golden", "iss": "ISSUER", "uid": "00u-user",
		"email": "ada@example.com", "groups": []string{"admins", "users"}})
	// The dev issuer's URL has a random port: a verifier for an issuer pinned as "ISSUER" on the
	// same keys keeps the golden claims stable.
	pinned, err := token.NewVerifier(token.VerifierConfig{Issuers: []token.Issuer{{URL: "ISSUER",
		Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: identifiedAs{e.Keys, "ISSUER"}}},
		Now: func() time.Time { return e.Now }})
	require.NoError(t, err)
	full := authz.NewAuthorizer(pinned, authz.Options{Realm: "api"})
	// A lean identity: two claim headers, no x-authz-claims, the email in the metadata.
	lean := authz.NewAuthorizer(pinned, authz.Options{Realm: "api", Policy: must(policy.Load([]byte(`
identity:
  claims_header: false
  claims: [{header: x-user-email, claim: email}, {header: x-user-groups, claim: groups}]
  metadata: [email]
`), []string{"default"}))})
	cases := map[string]struct {
		az      *authz.Authorizer
		headers map[string]string
	}{
		"allow":         {full, map[string]string{"authorization": "Bearer " + tok, "x-authz-user-id": "spoofed", "x-authz-role": "admin"}},
		"allow_lean":    {lean, map[string]string{"authorization": "Bearer " + tok, "x-user-groups": "spoofed"}},
		"no_token":      {full, nil},
		"invalid_token": {full, map[string]string{"authorization": "Bearer a.b.c"}},
		"unavailable":   {authz.NewAuthorizer(vUnloaded, authz.Options{}), map[string]string{"authorization": "Bearer " + tok}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resp, err := New(tc.az).Check(context.Background(), checkRequest("/api/messages", tc.headers, false))
			require.NoError(t, err)
			out, err := protojson.Marshal(resp)
			require.NoError(t, err)
			var v any // protojson's spacing is deliberately unstable; re-indent
			require.NoError(t, json.Unmarshal(out, &v))
			got, err := json.MarshalIndent(v, "", "  ")
			require.NoError(t, err)
			path := filepath.Join("testdata", "golden", name+".json")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, append(got, '\n'), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./grpcapi -run Golden -update")
			assert.JSONEq(t, string(want), string(got))
		})
	}
}

// identifiedAs is a key source whose issuer metadata declares id.
type identifiedAs struct {
	token.KeySource
	id string
}

func (k identifiedAs) IssuerID() string { return k.id }

func headerValue(hs []*corev3.HeaderValueOption, name string) string {
	for _, h := range hs {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// TestMemoisedResponsesStayCorrect: a hot token's allow is memoised, but a later request that
// carries spoofed identity headers, or matches another rule, still gets its own answer.
func TestMemoisedResponsesStayCorrect(t *testing.T) {
	e := newEnv(t, nil)
	p, err := policy.Load([]byte("rules:\n  - {name: secure, match: {path: /secure}}\n"), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(p)
	s := New(e.az)
	tok := "Bearer " + e.mint(t, nil)
	check := func(path string, extra map[string]string) *authv3.CheckResponse {
		h := map[string]string{"authorization": tok}
		for k, v := range extra {
			h[k] = v
		}
		resp, err := s.Check(context.Background(), checkRequest(path, h, false))
		require.NoError(t, err)
		return resp
	}
	first := check("/api/messages", nil)
	assert.Same(t, first, check("/api/messages", nil), "the hot token's allow is memoised")
	spoofed := check("/api/messages", map[string]string{"x-authz-role": "admin"})
	assert.Equal(t, []string{"x-authz-role", "authorization", "dpop"}, spoofed.GetOkResponse().GetHeadersToRemove())
	other := check("/secure", nil)
	assert.Equal(t, "secure", other.GetDynamicMetadata().GetFields()["rule"].GetStringValue())
	assert.Equal(t, "default", first.GetDynamicMetadata().GetFields()["rule"].GetStringValue())
	assert.Same(t, s.response(&authz.Decision{Outcome: authz.NoCredentials, Reason: token.ErrNoCredentials, Rule: "x"}, nil),
		s.response(&authz.Decision{Outcome: authz.NoCredentials, Reason: token.ErrNoCredentials, Rule: "x"}, nil), "identity-free denials are memoised")
}
