package authz

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func loadSample(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Load([]byte(samplePolicy), []string{"default"})
	require.NoError(t, err)
	return p
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
	p, err := policy.Load([]byte("dry_run: true\nrules:\n  - name: m\n    match: {path: /m}\n    require: {scopes: [nope]}\n"), []string{"default"})
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
