package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const methodsPolicy = `
rules:
  - name: delete
    match: { path_prefix: /api/messages, methods: [DELETE] }
    require: { scopes: [messages:delete] }
  - name: write
    match: { path_prefix: /api/messages, methods: [POST, PUT, PATCH] }
    require: { scopes: [messages:write] }
  - name: public-read
    match: { path_prefix: /api/messages, methods: [GET] }
    public: true
`

// TestMethodOverrides: a request is judged under every method the upstream may run it as. A
// POST carrying X-HTTP-Method-Override: DELETE (or X-HTTP-Method, X-Method-Override, or
// ?_method=DELETE) runs as DELETE in Symfony, Laravel, Express's method-override and gorilla; a
// form POST's body _method does in Rails, Symfony and Laravel. They used to be judged as POST.
func TestMethodOverrides(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(must(LoadPolicy([]byte(methodsPolicy), []string{"default"})))
	writer := e.mint(t, map[string]any{"scp": []string{"messages:write"}})
	deleter := e.mint(t, map[string]any{"scp": []string{"messages:write", "messages:delete"}})
	for _, tc := range []struct {
		name        string
		r           Request
		token       string
		want        Outcome
		rule        string
		overridesOn bool
	}{
		{"plain POST", Request{Method: "POST", Path: "/api/messages", ContentType: "application/json"}, writer, Allow, "write", true},
		{"override header", Request{Method: "POST", Path: "/api/messages", ContentType: "application/json",
			MethodOverrides: []string{"DELETE"}}, writer, InsufficientScope, "delete", true},
		{"override header, lower case and spaces", Request{Method: "POST", Path: "/api/messages", ContentType: "application/json",
			MethodOverrides: []string{" delete "}}, writer, InsufficientScope, "delete", true},
		{"override headers joined by a proxy", Request{Method: "POST", Path: "/api/messages", ContentType: "application/json",
			MethodOverrides: []string{"PUT,DELETE"}}, writer, InsufficientScope, "delete", true},
		{"override allowed for its own scopes", Request{Method: "POST", Path: "/api/messages", ContentType: "application/json",
			MethodOverrides: []string{"DELETE"}}, deleter, Allow, "write", true}, // an allow names the canonical reading's rule
		{"query _method", Request{Method: "POST", Path: "/api/messages?x=1&_method=delete", ContentType: "application/json"}, writer, InsufficientScope, "delete", true},
		{"query _method encoded", Request{Method: "POST", Path: "/api/messages?%5Fmethod=DEL%45TE", ContentType: "application/json"}, writer, InsufficientScope, "delete", true},
		{"query .method as PHP reads it", Request{Method: "POST", Path: "/api/messages?.method=DELETE", ContentType: "application/json"}, writer, InsufficientScope, "delete", true},
		{"query _METHOD", Request{Method: "POST", Path: "/api/messages?_METHOD=DELETE", ContentType: "application/json"}, writer, InsufficientScope, "delete", true},
		{"GET with an override to POST needs write", Request{Method: "GET", Path: "/api/messages", MethodOverrides: []string{"POST"}}, "", NoCredentials, "write", true},
		{"form POST may run as any method", Request{Method: "POST", Path: "/api/messages", ContentType: "application/x-www-form-urlencoded"}, writer, InsufficientScope, "delete", true},
		{"multipart POST may too", Request{Method: "POST", Path: "/api/messages", ContentType: "multipart/form-data; boundary=x"}, writer, InsufficientScope, "delete", true},
		{"POST without a content type and with a body", Request{Method: "POST", Path: "/api/messages", Body: BodyPresent}, writer, InsufficientScope, "delete", true},
		{"POST without a content type or a body", Request{Method: "POST", Path: "/api/messages", Body: BodyNone}, writer, Allow, "write", true},
		{"off: the upstream ignores overrides", Request{Method: "POST", Path: "/api/messages?_method=DELETE", ContentType: "application/x-www-form-urlencoded",
			MethodOverrides: []string{"DELETE"}}, writer, Allow, "write", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := methodsPolicy
			if !tc.overridesOn {
				pol += "upstream_paths: { method_override: false }\n"
			}
			e.az.SetPolicy(must(LoadPolicy([]byte(pol), []string{"default"})))
			r := tc.r
			r.Host = "api.example"
			if tc.token != "" {
				r.Authorization = []string{"Bearer " + tc.token}
			}
			d := e.az.Decide(context.Background(), &r)
			assert.Equal(t, tc.want, d.Outcome, "%v %s", d.Reason, d.Detail)
			assert.Equal(t, tc.rule, d.Rule)
		})
	}

	t.Run("too many overrides are refused", func(t *testing.T) {
		e.az.SetPolicy(must(LoadPolicy([]byte(methodsPolicy), []string{"default"})))
		var many []string
		for i := range 9 {
			many = append(many, fmt.Sprintf("M%c", 'A'+i))
		}
		d := e.az.Decide(context.Background(), &Request{Method: "POST", Host: "h", Path: "/api/messages",
			ContentType: "application/json", MethodOverrides: []string{strings.Join(many, ",")}, Authorization: []string{"Bearer " + deleter}})
		assert.Equal(t, InvalidRequest, d.Outcome)
		assert.Equal(t, ErrMethodOverrides, d.Reason)
	})

	t.Run("a policy without method rules reads no overrides", func(t *testing.T) {
		p := must(LoadPolicy([]byte("rules:\n  - match: { path: /x }\n    require: { scopes: [a] }\n"), []string{"default"}))
		methods, ok := p.methods(nil, &Request{Method: "POST", Path: "/x?_method=DELETE", MethodOverrides: []string{"DELETE"}})
		assert.True(t, ok)
		assert.Equal(t, []string{"POST"}, methods)
	})
}

// TestMethodOverridesOverGRPC: the gRPC front end reads the override headers, the content type
// and whether an HTTP/1 request has a body from Envoy's CheckRequest.
func TestMethodOverridesOverGRPC(t *testing.T) {
	for _, tc := range []struct {
		headers  map[string]string
		protocol string
		wantOver []string
		wantType string
		wantBody Body
	}{
		{map[string]string{"x-http-method-override": "DELETE", "content-type": "application/json", "content-length": "2"}, "HTTP/1.1", []string{"DELETE"}, "application/json", BodyPresent},
		{map[string]string{"x-method-override": "PUT", "x-http-method": "PATCH"}, "HTTP/1.1", []string{"PATCH", "PUT"}, "", BodyNone},
		{map[string]string{"content-length": "0"}, "HTTP/1.1", nil, "", BodyNone},
		{map[string]string{"transfer-encoding": "chunked"}, "HTTP/1.1", nil, "", BodyPresent},
		{map[string]string{}, "HTTP/2", nil, "", BodyUnknown},
	} {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/", Protocol: tc.protocol, Headers: tc.headers}}}}
		r, _ := requestFromCheck(req, identityNames{})
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
	old := must(LoadPolicy([]byte("rules:\n  - name: old\n    match: { path: /x }\n    require: { scopes: [messages:read] }\n"), []string{"default"}))
	added := must(LoadPolicy([]byte("identity:\n  claims: [{ header: x-user-email, claim: email }]\n"+
		"rules:\n  - name: new\n    match: { path: /x }\n    require: { scopes: [messages:read] }\n"), []string{"default"}))
	tok := e.mint(t, nil) // no email claim: no policy sets x-user-email for it

	// The request names the snapshot its front end read; a reload after that changes nothing.
	e.az.SetPolicy(old)
	r := &Request{Method: "GET", Host: "h", Path: "/x", Authorization: []string{"Bearer " + tok}, Policy: old}
	e.az.SetPolicy(added)
	assert.Equal(t, "old", e.az.Decide(context.Background(), r).Rule, "decided by the snapshot the front end read")

	// Through the gRPC front end under constant reloads: whenever the policy that names
	// x-user-email as an identity header decided, the client's copy is removed.
	s := NewGRPCServer(e.az)
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

// TestHeadersToRemoveIsLinear: tens of thousands of client identity headers are each named once
// (BenchmarkHeadersToRemove shows the cost is linear).
func TestHeadersToRemoveIsLinear(t *testing.T) {
	var sent []string
	for i := range 60_000 {
		sent = append(sent, fmt.Sprintf("x-authz-h%d", i))
	}
	sent = append(sent, "x-authz-h1", "x-authz-subject")
	out := headersToRemove([]Header{{HeaderSubject, "s"}}, sent)
	assert.Len(t, out, 60_000, "each distinct name once, the one the decision sets left out")
	assert.NotContains(t, out, "x-authz-subject")
	assert.Equal(t, []string{"x-authz-h0", "x-authz-h1", "x-authz-h2"}, out[:3], "in the order sent")
}

// BenchmarkHeadersToRemove: linear in the headers a client sent (quadratic before: 60,000 took
// 6.8 s).
func BenchmarkHeadersToRemove(b *testing.B) {
	var sent []string
	for i := range 60_000 {
		sent = append(sent, fmt.Sprintf("x-authz-h%d", i))
	}
	for b.Loop() {
		headersToRemove([]Header{{HeaderSubject, "s"}}, sent)
	}
}

// FuzzQueryMethods: whatever the query, the methods read from it are method tokens, and a
// plain _method=X pair is always read.
func FuzzQueryMethods(f *testing.F) {
	for _, s := range []string{"/a?_method=DELETE", "/a?%5Fmethod=put&x", "/a?.method=%50UT", "/a?x=%zz&_method=get", "/a?_method"} {
		f.Add(s, "PATCH")
	}
	f.Fuzz(func(t *testing.T, target, method string) {
		for _, m := range queryMethods(target) {
			if !methodToken.MatchString(m) {
				t.Fatalf("queryMethods(%q) gave %q, not a method token", target, m)
			}
		}
		m := strings.ToUpper(method)
		if !methodToken.MatchString(m) || strings.ContainsAny(target, "?#") {
			return
		}
		got := queryMethods(target + "?a=1&_method=" + method)
		if !slices.Contains(got, m) {
			t.Fatalf("queryMethods(%q) = %q, missing %s", target+"?a=1&_method="+method, got, m)
		}
	})
}
