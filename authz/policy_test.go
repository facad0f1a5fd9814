package authz

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const samplePolicy = `
rules:
  - name: health
    match: { path: /healthz }
    public: true
  - name: messages
    match: { policy: messages }
    require:
      scopes: [messages:read]
  - name: write
    match: { path_prefix: /api/messages, methods: [post, PUT] }
    require:
      scopes: [messages:write]
  - name: admin
    match: { hosts: [admin.example.com], path_glob: "/admin/*" }
    require:
      any_scopes: [admin, superuser]
      claims:
        - { claim: groups, contains: admins }
        - { claim: email_verified, equals: true }
        - { claim: dept, one_of: [eng, ops] }
        - { claim: address.country, equals: NL }
        - { claim: amr, contains_any: [mfa, hwk] }
        - { claim: impersonated, exists: false }
  - name: reports
    match: { path_regex: "/reports/[0-9]+" }
    require:
      issuers: [default]
      audiences: [api://reports]
  - name: trial
    match: { path: /beta }
    require: { scopes: [beta] }
    dry_run: true
default:
  require: {}
`

func loadSample(t *testing.T) *Policy {
	t.Helper()
	p, err := LoadPolicy([]byte(samplePolicy), []string{"default"})
	require.NoError(t, err)
	return p
}

func TestPolicyMatching(t *testing.T) {
	p := loadSample(t)
	tests := []struct {
		method, host, path, policy string
		want                       string
	}{
		{"GET", "api", "/healthz", "", "health"},
		{"GET", "api", "/healthz?x=1", "", "health"},
		{"GET", "api", "/healthzz", "", "default"},
		{"GET", "api", "/anything", "messages", "messages"},
		{"POST", "api", "/api/messages", "", "write"},
		{"put", "api", "/api/messages/7", "", "write"},
		{"GET", "api", "/api/messages", "", "default"},
		{"POST", "api", "/api/messagesX", "", "default"},
		{"GET", "admin.example.com:443", "/admin/users", "", "admin"},
		{"GET", "ADMIN.example.com", "/admin/users", "", "admin"},
		{"GET", "other.example.com", "/admin/users", "", "default"},
		{"GET", "admin.example.com", "/admin/users/1", "", "default"},
		{"GET", "api", "/reports/42", "", "reports"},
		{"GET", "api", "/reports/42/x", "", "default"},
	}
	for _, tt := range tests {
		r := &Request{Method: tt.method, Host: tt.host, Path: tt.path, ContextExtensions: map[string]string{}}
		if tt.policy != "" {
			r.ContextExtensions["policy"] = tt.policy
		}
		assert.Equal(t, tt.want, canonicalRule(t, p, r), "%s %s%s policy=%q", tt.method, tt.host, tt.path, tt.policy)
	}
}

// canonicalRule names the rule the canonical reading of r selects.
func canonicalRule(t *testing.T, p *Policy, r *Request) string {
	t.Helper()
	_, readings, err := p.Explain(r)
	require.NoError(t, err)
	return readings[0].Rule
}

func TestPolicyDecisions(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(loadSample(t))
	admin := map[string]any{
		"scp": []string{"admin"}, "groups": []string{"users", "admins"}, "email_verified": true, "dept": "ops",
		"address": map[string]any{"country": "NL"}, "amr": []string{"pwd", "mfa"},
	}
	with := func(changes map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range admin {
			out[k] = v
		}
		for k, v := range changes {
			if v == nil {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name      string
		path      string
		host      string
		method    string
		policy    string
		token     string
		want      Outcome
		wantWWW   string
		wantIdent bool
	}{
		{name: "public, no token", path: "/healthz", want: Allow},
		{name: "public, valid token forwards identity", path: "/healthz", token: e.mint(t, nil), want: Allow, wantIdent: true},
		{name: "public, invalid token ignored", path: "/healthz", token: "a.b.c", want: Allow},
		{name: "scope present", policy: "messages", token: e.mint(t, nil), want: Allow, wantIdent: true},
		{name: "scope missing", policy: "messages", token: e.mint(t, map[string]any{"scp": []string{"profile"}}),
			want: InsufficientScope, wantWWW: `Bearer realm="api", error="insufficient_scope", error_description="The access token lacks a required scope", scope="messages:read"`},
		{name: "scope from a space-separated scope claim", policy: "messages", token: e.mint(t, map[string]any{"scp": nil, "scope": "openid messages:read"}), want: Allow, wantIdent: true},
		{name: "no token on a protected rule", policy: "messages", want: NoCredentials},
		{name: "method-specific rule", method: "POST", path: "/api/messages", token: e.mint(t, nil), want: InsufficientScope},
		{name: "all claims hold", host: "admin.example.com", path: "/admin/x", token: e.mint(t, admin), want: Allow, wantIdent: true},
		{name: "any scope: other one", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"scp": []string{"superuser"}})), want: Allow, wantIdent: true},
		{name: "any scope: none", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"scp": []string{"x"}})), want: InsufficientScope},
		{name: "contains fails", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"groups": []string{"users"}})), want: InsufficientScope,
			wantWWW: `Bearer realm="api", error="insufficient_scope", error_description="The access token lacks a required claim"`},
		{name: "contains on a string claim", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"groups": "users admins"})), want: Allow, wantIdent: true},
		{name: "equals fails on type", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"email_verified": "true"})), want: InsufficientScope},
		{name: "one_of fails", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"dept": "sales"})), want: InsufficientScope},
		{name: "nested claim fails", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"address": map[string]any{"country": "BE"}})), want: InsufficientScope},
		{name: "contains_any fails", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"amr": []string{"pwd"}})), want: InsufficientScope},
		{name: "exists false fails", host: "admin.example.com", path: "/admin/x", token: e.mint(t, with(map[string]any{"impersonated": true})), want: InsufficientScope},
		{name: "route audience", path: "/reports/1", token: e.mint(t, nil), want: InsufficientScope},
		{name: "route audience met", path: "/reports/1", token: e.mint(t, map[string]any{"aud": []string{"api://default", "api://reports"}}), want: Allow, wantIdent: true},
		{name: "dry run allows a missing scope", path: "/beta", token: e.mint(t, nil), want: Allow, wantIdent: true},
		{name: "dry run allows no token, anonymously", path: "/beta", want: Allow},
		{name: "default rule needs a valid token", path: "/other", token: "a.b.c", want: InvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{Method: "GET", Host: "api.example", Path: tt.path, ContextExtensions: map[string]string{}}
			if r.Path == "" {
				r.Path = "/any"
			}
			if tt.method != "" {
				r.Method = tt.method
			}
			if tt.host != "" {
				r.Host = tt.host
			}
			if tt.policy != "" {
				r.ContextExtensions["policy"] = tt.policy
			}
			if tt.token != "" {
				r.Authorization = []string{"Bearer " + tt.token}
			}
			d := e.az.Decide(context.Background(), r)
			assert.Equal(t, tt.want.String(), d.Outcome.String(), "reason %v, detail %s", d.Reason, d.Detail)
			if tt.wantWWW != "" {
				assert.Equal(t, tt.wantWWW, headerOf(d.ClientHeaders(Challenges{Realm: "api"}), "www-authenticate"))
				assert.Equal(t, 403, d.HTTPStatus())
			}
			assert.Equal(t, tt.wantIdent, len(d.UpstreamHeaders()) > 0, "identity forwarded")
		})
	}
}

func headerOf(hs []Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func TestPublicRuleStripsSpoofedIdentity(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(loadSample(t))
	d := e.az.Decide(context.Background(), &Request{Path: "/healthz"})
	require.Equal(t, Allow, d.Outcome)
	assert.Equal(t, []string{"x-authz-subject", "x-authz-user-id"}, headersToRemove(d.UpstreamHeaders(), []string{"x-authz-subject", "x-authz-user-id"}),
		"an anonymous allow removes every client-sent identity header")
}

func TestDryRunLogsWhatWouldBeDenied(t *testing.T) {
	e := newEnv(t, nil)
	var logs bytes.Buffer
	p, err := LoadPolicy([]byte("dry_run: true\nrules:\n  - name: m\n    match: {path: /m}\n    require: {scopes: [nope]}\n"), []string{"default"})
	require.NoError(t, err)
	az := NewAuthorizer(e.v, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Policy: p})
	tok := e.mint(t, nil)
	d := az.Decide(context.Background(), &Request{Path: "/m", Authorization: []string{"Bearer " + tok}})
	assert.Equal(t, Allow, d.Outcome)
	assert.True(t, d.DryRun())
	d = az.Decide(context.Background(), &Request{Path: "/other"})
	assert.Equal(t, Allow, d.Outcome, "global dry run covers the default rule too")
	out := logs.String()
	assert.Contains(t, out, `"dry_run":true`)
	assert.Contains(t, out, `"would_be":"insufficient_scope"`)
	assert.Contains(t, out, `"would_be":"no_credentials"`)
	assert.Contains(t, out, `"level":"WARN"`)
	assert.NotContains(t, out, tok)
}

func TestLoadPolicyErrorsHaveLines(t *testing.T) {
	bad := `issuers:
  - name: default
    issuer: https://x.example
rules:
  - name: a
    match: {}
    public: true
  - name: a
    match: { path: /x, path_prefix: /y }
  - name: c
    match: { path_regex: "([" , methods: ["GET!"] }
    public: true
    require: { scopes: [x] }
  - name: d
    match: { path: nope, path_glob: "[" }
    require:
      issuers: [ghost]
      scopes: ['a"b']
      claims:
        - { claim: groups }
        - { equals: 1 }
        - { claim: x, equals: 1, contains: 2 }
`
	_, err := LoadPolicy([]byte(bad), []string{"default"})
	require.Error(t, err)
	for _, want := range []string{
		`line 2: issuer "default": the name is already used`,
		`line 2: issuer "default": at least one audience is required`,
		`line 5: rule "a" matches every request`,
		`line 8: rule "a": the name is used twice`,
		`line 8: rule "a": path, path_prefix, path_glob and path_regex contradict`,
		`line 10: rule "c": path_regex`,
		`line 10: rule "c": method "GET!"`,
		`line 10: rule "c": public: true contradicts require`,
		`line 14: rule "d": path "nope" must start with /`,
		`line 14: rule "d": path_glob "["`,
		`line 14: rule "d": issuer "ghost" is not configured`,
		`line 14: rule "d": scope "a\"b"`,
		`line 14: rule "d": claim "groups": give exactly one`,
		`line 14: rule "d": a claim requirement needs claim:`,
		`line 14: rule "d": claim "x": give exactly one`,
	} {
		assert.ErrorContains(t, err, want)
	}

	_, err = LoadPolicy([]byte("rules:\n  - name: a\n    mtach: {}\n"), nil)
	assert.ErrorContains(t, err, `line 3, column 5: rules[0] has no key "mtach"; did you mean "match"?`, "unknown keys are errors, with their line")
	_, err = LoadPolicy([]byte("default:\n  match: {path: /x}\n"), nil)
	assert.ErrorContains(t, err, "default: has no match")
}

func TestLoadPolicyEmptyIsDefault(t *testing.T) {
	p, err := LoadPolicy([]byte("# nothing\n"), nil)
	require.NoError(t, err)
	assert.Empty(t, p.Rules)
	assert.Equal(t, "default", canonicalRule(t, p, &Request{Path: "/"}))
	assert.False(t, p.Default.Public)
}

// FuzzLoadPolicy: any file loads or fails with an error, never a panic; a loaded policy matches
// any request without panicking.
func FuzzLoadPolicy(f *testing.F) {
	f.Add([]byte(samplePolicy))
	f.Add([]byte("rules:\n  - match: {path_regex: '(a+)+'}\n"))
	f.Add([]byte("rules: &a [*a]\n"))
	f.Add([]byte("default: {public: true}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := LoadPolicy(data, []string{"default"})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy:") {
				t.Fatalf("error without the policy prefix: %v", err)
			}
			return
		}
		for _, path := range []string{"/", "/healthz", "/admin/x", "/" + string(data[:min(len(data), 20)])} {
			_, _, _ = p.Explain(&Request{Method: "GET", Host: "h", Path: path})
		}
	})
}

// TestPolicyShapeErrorsAllAtOnce: every misspelt key and every value of the wrong kind is
// reported with its line and column, with a suggestion for near misses, in one report with the
// semantic errors of the same file.
func TestPolicyShapeErrorsAllAtOnce(t *testing.T) {
	src := `rules:
  - name: a
    match: { path-prefix: /a }
    requires:
      scopes: [x]
  - name: b
    match: { path_glob: "/b/[" }
    require:
      scopes: read
    public: yes please
    colour: blue
dry_run: maybe
`
	_, err := LoadPolicy([]byte(src), []string{"default"})
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		`line 3, column 14: rules[0].match has no key "path-prefix"; did you mean "path_prefix"?`,
		`line 4, column 5: rules[0] has no key "requires"; did you mean "require"?`,
		`line 9, column 15: rules[1].require.scopes must be a list, not "read"`,
		`line 10, column 13: rules[1].public must be true or false, not "yes please"`,
		`line 11, column 5: rules[1] has no key "colour" (it has dry_run, identity, match, name, public, require)`,
		`line 12, column 10: dry_run must be true or false, not "maybe"`,
		`rule "b": path_glob`, // the semantic check of the same file: a bad glob
	} {
		assert.Contains(t, msg, want)
	}
	assert.NotContains(t, msg, "authz.", "no Go type names")
	assert.Less(t, strings.Index(msg, "line 3,"), strings.Index(msg, "line 12,"), "in the order of the file")
}

func TestSuggest(t *testing.T) {
	known := yamlFields(reflect.TypeFor[requireSpec]())
	for key, want := range map[string]string{
		"scope": "scopes", "Scopes": "scopes", "any-scopes": "any_scopes", "issuer": "issuers",
		"sender_constraint": "sender_constrained", "audience": "audiences", "zzz": "", "claims_header": "",
	} {
		assert.Equal(t, want, suggest(key, known), key)
	}
}

// TestPolicyAliasBomb: YAML aliases of aliases (a billion laughs) are checked once each and
// refused, not expanded.
func TestPolicyAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n  - name: r\n    match: {path: /x}\n    require: {scopes: &a0 [x, x, x, x, x, x, x, x, x, x]}\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "  - name: r%d\n    match: {path: /x%d}\n    require: {scopes: &a%d [%s]}\n", i, i, i,
			strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	_, err := LoadPolicy([]byte(b.String()), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must be a single value", "a list of lists where scopes are names")
}

// TestPolicyAliasOfAnotherShape: an alias used where another shape belongs is reported there,
// in the file's terms, even when the same anchor fits where it was defined.
func TestPolicyAliasOfAnotherShape(t *testing.T) {
	_, err := LoadPolicy([]byte(`rules:
  - name: a
    match: {path: /a}
    require: {scopes: &s [x]}
  - name: b
    match: {path: /b}
    require: {scopes: *s}
  - name: c
    match: *s
`), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 9, column 12: rules[2].match must be a mapping (key: value), not a list")
	assert.NotContains(t, err.Error(), "authz.", "no Go type names")
}
