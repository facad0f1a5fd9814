package authz

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
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
	e.az.SetPolicy(must(policy.Load([]byte(methodsPolicy), []string{"default"})))
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
		// Where PHP and Rack end the media type: "," and white space too.
		{"form type then a comma", Request{Method: "POST", Path: "/api/messages", ContentType: "application/x-www-form-urlencoded,text/plain"}, writer, InsufficientScope, "delete", true},
		{"form type then a space", Request{Method: "POST", Path: "/api/messages", ContentType: "application/x-www-form-urlencoded charset=utf-8"}, writer, InsufficientScope, "delete", true},
		{"form type after a tab", Request{Method: "POST", Path: "/api/messages", ContentType: "\tApplication/X-WWW-Form-Urlencoded"}, writer, InsufficientScope, "delete", true},
		// Query names as PHP and Rack read them.
		{"query _method cut at a NUL (PHP)", Request{Method: "POST", Path: "/api/messages?_method%00x=DELETE", ContentType: "application/json"}, writer, InsufficientScope, "delete", true},
		{"query _method after a semicolon (Rack)", Request{Method: "POST", Path: "/api/messages?x=1;_method=DELETE", ContentType: "application/json"}, writer, InsufficientScope, "delete", true},
		{"query _method[] (PHP)", Request{Method: "POST", Path: "/api/messages?_method[]=DELETE", ContentType: "application/json"}, writer, InsufficientScope, "delete", true},
		{"POST without a content type and with a body", Request{Method: "POST", Path: "/api/messages", Body: policy.BodyPresent}, writer, InsufficientScope, "delete", true},
		{"POST without a content type or a body", Request{Method: "POST", Path: "/api/messages", Body: policy.BodyNone}, writer, Allow, "write", true},
		{"off: the upstream ignores overrides", Request{Method: "POST", Path: "/api/messages?_method=DELETE", ContentType: "application/x-www-form-urlencoded",
			MethodOverrides: []string{"DELETE"}}, writer, Allow, "write", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := methodsPolicy
			if !tc.overridesOn {
				pol += "upstream_paths: { method_override: false }\n"
			}
			e.az.SetPolicy(must(policy.Load([]byte(pol), []string{"default"})))
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
		e.az.SetPolicy(must(policy.Load([]byte(methodsPolicy), []string{"default"})))
		var many []string
		for i := range 9 {
			many = append(many, fmt.Sprintf("M%c", 'A'+i))
		}
		d := e.az.Decide(context.Background(), &Request{Method: "POST", Host: "h", Path: "/api/messages",
			ContentType: "application/json", MethodOverrides: []string{strings.Join(many, ",")}, Authorization: []string{"Bearer " + deleter}})
		assert.Equal(t, InvalidRequest, d.Outcome)
		assert.Equal(t, policy.ErrMethodOverrides, d.Reason)
	})

	t.Run("a policy without method rules reads no overrides", func(t *testing.T) {
		p := must(policy.Load([]byte("rules:\n  - match: { path: /x }\n    require: { scopes: [a] }\n"), []string{"default"}))
		methods, ok := p.Methods(nil, &policy.Request{Method: "POST", Path: "/x?_method=DELETE", MethodOverrides: []string{"DELETE"}})
		assert.True(t, ok)
		assert.Equal(t, []string{"POST"}, methods)
	})
}

// TestHeadersToRemoveIsLinear: tens of thousands of client identity headers are each named once
// (BenchmarkHeadersToRemove shows the cost is linear).
func TestHeadersToRemoveIsLinear(t *testing.T) {
	var sent []string
	for i := range 60_000 {
		sent = append(sent, fmt.Sprintf("x-authz-h%d", i))
	}
	sent = append(sent, "x-authz-h1", "x-authz-subject")
	out := headersToRemove([]Header{{policy.HeaderSubject, "s"}}, sent)
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
		headersToRemove([]Header{{policy.HeaderSubject, "s"}}, sent)
	}
}
