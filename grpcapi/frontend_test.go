package grpcapi

import (
	"context"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/internal/authztest"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/internal/tracing/tracingtest"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
)

// TestMethodOverridesOverGRPC: the gRPC front end reads the override headers, the content type
// and whether an HTTP/1 request has a body from Envoy's CheckRequest.
func TestMethodOverridesOverGRPC(t *testing.T) {
	for _, tc := range []struct {
		headers  map[string]string
		protocol string
		wantOver []string
		wantType string
		wantBody policy.Body
	}{
		{map[string]string{"x-http-method-override": "DELETE", "content-type": "application/json", "content-length": "2"}, "HTTP/1.1", []string{"DELETE"}, "application/json", policy.BodyPresent},
		{map[string]string{"x-method-override": "PUT", "x-http-method": "PATCH"}, "HTTP/1.1", []string{"PATCH", "PUT"}, "", policy.BodyNone},
		{map[string]string{"content-length": "0"}, "HTTP/1.1", nil, "", policy.BodyNone},
		{map[string]string{"transfer-encoding": "chunked"}, "HTTP/1.1", nil, "", policy.BodyPresent},
		{map[string]string{}, "HTTP/2", nil, "", policy.BodyUnknown},
	} {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/", Protocol: tc.protocol, Headers: tc.headers}}}}
		r, _ := requestFromCheck(req, policy.Default(nil))
		overrides := append([]string(nil), r.MethodOverrides...)
		slices.Sort(overrides)
		assert.Equal(t, tc.wantOver, overrides, "%v", tc.headers)
		assert.Equal(t, tc.wantType, r.ContentType, "%v", tc.headers)
		assert.Equal(t, tc.wantBody, r.Body, "%v %s", tc.headers, tc.protocol)
	}
}

// TestOnePolicyPerRequest: a front end reads the identity header names and decides by the same
// policy, even when a reload lands between the two (a reload adding a claim header used to let
// the client's copy of it through on some allows decided by the new policy).
func TestOnePolicyPerRequest(t *testing.T) {
	e := newEnv(t, nil)
	old := must(policy.Load([]byte("rules:\n  - name: old\n    match: { path: /x }\n    require: { scopes: [messages:read] }\n"), []string{"default"}))
	added := must(policy.Load([]byte("identity:\n  claims: [{ header: x-user-email, claim: email }]\n"+
		"rules:\n  - name: new\n    match: { path: /x }\n    require: { scopes: [messages:read] }\n"), []string{"default"}))
	tok := e.mint(t, nil) // no email claim: no policy sets x-user-email for it

	// The request names the snapshot its front end read; a reload after that changes nothing.
	e.az.SetPolicy(old)
	r := &authz.Request{Method: "GET", Host: "h", Path: "/x", Authorization: []string{"Bearer " + tok}, Policy: old}
	e.az.SetPolicy(added)
	assert.Equal(t, "old", e.az.Decide(context.Background(), r).Rule, "decided by the snapshot the front end read")

	// Through the gRPC front end under constant reloads: whenever the policy that names
	// x-user-email as an identity header decided, the client's copy is removed.
	s := New(e.az)
	check := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x", Host: "h", Headers: map[string]string{
			"authorization": "Bearer " + tok, "x-user-email": "mallory@example.com"}}}}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20_000 {
			if i%2 == 0 {
				e.az.SetPolicy(added)
			} else {
				e.az.SetPolicy(old)
			}
		}
	}()
	decidedByNew := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		resp, err := s.Check(context.Background(), check)
		require.NoError(t, err)
		if resp.GetDynamicMetadata().GetFields()["rule"].GetStringValue() != "new" {
			continue
		}
		decidedByNew++
		require.Contains(t, resp.GetOkResponse().GetHeadersToRemove(), "x-user-email",
			"an allow by the policy naming x-user-email kept the client's copy")
	}
	t.Logf("%d allows decided by the reloaded policy", decidedByNew)
}

func TestCheckContinuesTheCallersTrace(t *testing.T) {
	exp := tracingtest.Install(t)
	e := newEnv(t, nil)
	for _, raw := range []bool{false, true} {
		exp.Reset()
		_, err := New(e.az).Check(context.Background(), checkRequest("/api/messages", map[string]string{"traceparent": tracingtest.Traceparent}, raw))
		require.NoError(t, err)
		spans := exp.GetSpans()
		require.Len(t, spans, 1)
		assert.Equal(t, "authz.Check", spans[0].Name)
		assert.Equal(t, tracingtest.CallerTrace, spans[0].SpanContext.TraceID().String(), "same trace as the caller")
		assert.Equal(t, tracingtest.CallerSpan, spans[0].Parent.SpanID().String(), "child of the caller's span")
		assert.Contains(t, spans[0].Attributes, attribute.String("authz.decision", "no_credentials"))
	}
}

// TestDPoPOverGRPC: the proof and scheme come from Envoy's headers (joined map or header_map),
// the client certificate from the peer (include_peer_certificate).
func TestDPoPOverGRPC(t *testing.T) {
	e := newEnv(t, &authztest.Options{DPoP: true})
	const uri = "https://api.example/api/messages"
	bound := e.mint(t, map[string]any{"cnf": map[string]string{"jkt": e.JKT}})
	cert, x5t := tokentest.ClientCert(t)
	certBound := e.mint(t, map[string]any{"cnf": map[string]string{"x5t#S256": x5t}})
	s := New(e.az)

	t.Run("headers", func(t *testing.T) {
		req := checkRequest("/api/messages?x=1", map[string]string{"authorization": "DPoP " + bound,
			"dpop": e.Proof(t, "GET", uri, bound)}, false)
		resp, err := s.Check(context.Background(), req)
		require.NoError(t, err)
		assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode(), "%v", resp.GetStatus())
	})
	t.Run("header_map, a replayed proof", func(t *testing.T) {
		proof := e.Proof(t, "GET", uri, bound)
		for i, want := range []codes.Code{codes.OK, codes.Unauthenticated} {
			req := checkRequest("/api/messages", map[string]string{"authorization": "DPoP " + bound}, true)
			req.Attributes.Request.Http.HeaderMap.Headers = append(req.Attributes.Request.Http.HeaderMap.Headers,
				&corev3.HeaderValue{Key: "dpop", RawValue: []byte(proof)})
			resp, err := s.Check(context.Background(), req)
			require.NoError(t, err)
			assert.Equal(t, int32(want), resp.GetStatus().GetCode(), "use %d", i+1)
		}
	})
	t.Run("peer certificate", func(t *testing.T) {
		req := checkRequest("/api/messages", map[string]string{"authorization": "Bearer " + certBound}, false)
		resp, err := s.Check(context.Background(), req)
		require.NoError(t, err)
		assert.Equal(t, int32(codes.Unauthenticated), resp.GetStatus().GetCode(), "no certificate")
		req.Attributes.Source = &authv3.AttributeContext_Peer{Certificate: cert}
		resp, err = s.Check(context.Background(), req)
		require.NoError(t, err)
		assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
	})
}

// TestSpoofedClaimHeadersAreRemoved: a client's copy of a configured claim header never
// reaches the upstream, whether or not the token has the claim.
func TestSpoofedClaimHeadersAreRemoved(t *testing.T) {
	e := newEnv(t, &authztest.Options{Policy: "identity:\n  claims:\n    - { header: x-user-email, claim: email }\n    - { header: x-user-groups, claim: groups }\n"})
	withEmail := e.mint(t, map[string]any{"email": "ada@example.com"})
	resp, err := New(e.az).Check(context.Background(), checkRequest("/api/messages",
		map[string]string{"authorization": "Bearer " + withEmail, "x-user-email": "spoofed", "x-user-groups": "admins"}, false))
	require.NoError(t, err)
	ok := resp.GetOkResponse()
	require.NotNil(t, ok)
	assert.Equal(t, "ada@example.com", headerValue(ok.GetHeaders(), "x-user-email"), "overwritten")
	assert.Contains(t, ok.GetHeadersToRemove(), "x-user-groups", "the token has no groups: removed")
	assert.NotContains(t, ok.GetHeadersToRemove(), "x-user-email", "never removed and set at once")
}

// TestTwoAuthorizationHeadersAreRefused: two credentials, joined by Envoy into one value or
// apart in header_map, are 400 INVALID_ARGUMENT.
func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, nil)
	for name, raw := range map[string]bool{"headers (joined)": false, "header_map": true} {
		t.Run(name, func(t *testing.T) {
			client := dialCheck(t, e.az)
			req := checkRequest("/api/messages", nil, raw)
			h := req.Attributes.Request.Http
			if raw {
				h.HeaderMap.Headers = append(h.HeaderMap.Headers,
					&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Basic dXNlcjpwYXNz")},
					&corev3.HeaderValue{Key: "Authorization", RawValue: []byte("Bearer " + tok)})
			} else {
				h.Headers["authorization"] = "Basic dXNlcjpwYXNz,Bearer " + tok
			}
			resp, err := client.Check(context.Background(), req)
			require.NoError(t, err)
			assert.Equal(t, int32(codes.InvalidArgument), resp.GetStatus().GetCode())
			assert.Equal(t, int32(400), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
		})
	}
}

func TestRefusedPath(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, nil)
	resp, err := New(e.az).Check(context.Background(),
		checkRequest("/public/..%2Fsecure", map[string]string{"authorization": "Bearer " + tok}, false))
	require.NoError(t, err)
	assert.Equal(t, int32(codes.InvalidArgument), resp.GetStatus().GetCode())
	assert.Equal(t, "path_encoded_slash", resp.GetStatus().GetMessage())
	denied := resp.GetDeniedResponse()
	assert.Equal(t, `{"error":"invalid_request","error_description":"The request path has an encoded slash or backslash"}`, denied.GetBody())
	assert.Nil(t, resp.GetOkResponse())
}
