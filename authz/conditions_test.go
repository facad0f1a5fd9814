package authz

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/policy/stepup"
	"github.com/platformauth/envoy-okta-authz/token"
)

// conditionsPolicy is the operator's story of issue 23 and the edges around it.
const conditionsPolicy = `
rules:
  - name: team-admin
    match: { path_prefix: /admin }
    require:
      # members of team-* groups, from the tenant in the host, with a second factor in the
      # last 10 minutes
      cel:
        - claims.groups.exists(g, g.startsWith("team-"))
        - request.host.split(".")[0] == claims.tenant
      acr: [urn:okta:loa:2fa:any]
      max_age: 10m
  - name: tenants
    match: { path_prefix: /tenants }
    require:
      cel: '!request.path.startsWith("/tenants/secret") && request.method != "DELETE"'
  - name: header-claim
    match: { path: /header }
    require: { cel: 'request.headers["x-tenant"] == claims.tenant' }
  - name: weekdays
    match: { path: /weekdays }
    require: { cel: 'now.getDayOfWeek("Europe/Amsterdam") in [1, 2, 3, 4, 5] && now.getHours("Europe/Amsterdam") < 18' }
  - name: costly
    match: { path: /costly }
    require:
      cel: 'claims.groups.all(a, claims.groups.all(b, claims.groups.all(c, claims.groups.all(d, a + b + c + d != ""))))'
  - name: flagged
    match: { path: /flagged, cel: 'request.headers["x-flag"] == "on"' }
    public: true
  - name: scopes-first
    match: { path: /scopes-first }
    require: { scopes: [admin], acr: [phr] }
`

func TestConditionsAndStepUp(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(loadPolicy(t, conditionsPolicy))
	member := map[string]any{"groups": []string{"users", "team-blue"}, "tenant": "acme",
		"acr": "urn:okta:loa:2fa:any", "auth_time": t0.Add(-5 * time.Minute).Unix()}
	with := func(changes map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range member {
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
	many := make([]string, 40)
	for i := range many {
		many[i] = strings.Repeat("g", i+1)
	}
	tests := []struct {
		name    string
		method  string
		host    string
		path    string
		header  http.Header
		claims  map[string]any
		noToken bool
		want    Outcome
		reason  *Reason
		www     string
	}{
		{name: "team member, tenant host, fresh second factor", host: "acme.api.example", path: "/admin/x", claims: member, want: Allow},
		{name: "not a team member", host: "acme.api.example", path: "/admin/x", claims: with(map[string]any{"groups": []string{"users"}}),
			want: InsufficientScope, reason: policy.ErrConditionUnmet,
			www: `Bearer realm="api", error="insufficient_scope", error_description="The request does not meet a condition of this resource"`},
		{name: "another tenant's host", host: "globex.api.example", path: "/admin/x", claims: member, want: InsufficientScope, reason: policy.ErrConditionUnmet},
		{name: "no tenant claim: an error, refused", host: "acme.api.example", path: "/admin/x", claims: with(map[string]any{"tenant": nil}),
			want: InsufficientScope, reason: policy.ErrConditionError,
			www: `Bearer realm="api", error="insufficient_scope", error_description="A condition of this resource could not be evaluated"`},
		{name: "groups not a list: an error, refused", host: "acme.api.example", path: "/admin/x", claims: with(map[string]any{"groups": 7}),
			want: InsufficientScope, reason: policy.ErrConditionError},
		{name: "password only: step up", host: "acme.api.example", path: "/admin/x", claims: with(map[string]any{"acr": "urn:okta:loa:1fa:pwd"}),
			want: InsufficientAuthentication, reason: stepup.ErrACR,
			www: `Bearer realm="api", error="insufficient_user_authentication", error_description="A stronger authentication is required for this resource", acr_values="urn:okta:loa:2fa:any", max_age=600`},
		{name: "second factor too long ago", host: "acme.api.example", path: "/admin/x", claims: with(map[string]any{"auth_time": t0.Add(-13 * time.Minute).Unix()}),
			want: InsufficientAuthentication, reason: stepup.ErrAuthTooOld},
		{name: "within max_age and the leeway", host: "acme.api.example", path: "/admin/x", claims: with(map[string]any{"auth_time": t0.Add(-11 * time.Minute).Unix()}), want: Allow},
		{name: "no auth_time", host: "acme.api.example", path: "/admin/x", claims: with(map[string]any{"auth_time": nil}),
			want: InsufficientAuthentication, reason: stepup.ErrAuthTooOld},
		{name: "not a member and weak: the condition first", host: "acme.api.example", path: "/admin/x",
			claims: with(map[string]any{"groups": []string{}, "acr": "urn:okta:loa:1fa:pwd"}), want: InsufficientScope, reason: policy.ErrConditionUnmet},
		{name: "missing scope and weak: the scope first", path: "/scopes-first", claims: member, want: InsufficientScope, reason: policy.ErrInsufficientScope},
		{name: "no token on a conditional rule", host: "acme.api.example", path: "/admin/x", noToken: true, want: NoCredentials},

		{name: "tenant path", path: "/tenants/acme/x", claims: member, want: Allow},
		{name: "a reading the upstream serves fails the condition", path: "/tenants/SECRET/x", claims: member, want: InsufficientScope, reason: policy.ErrConditionUnmet},
		{name: "HEAD read as GET, GET allowed", method: "HEAD", path: "/tenants/acme/x", claims: member, want: Allow},
		{name: "an override the upstream honours fails the condition", path: "/tenants/acme/x?_method=DELETE", claims: member,
			want: InsufficientScope, reason: policy.ErrConditionUnmet},
		{name: "a form POST may name any method in its body", method: "POST", path: "/tenants/acme/x", claims: member,
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, want: InsufficientScope, reason: policy.ErrConditionUnmet},
		{name: "a JSON POST is a POST", method: "POST", path: "/tenants/acme/x", claims: member,
			header: http.Header{"Content-Type": {"application/json"}}, want: Allow},

		{name: "header equals the claim", path: "/header", header: http.Header{"X-Tenant": {"acme"}}, claims: member, want: Allow},
		{name: "header of another tenant", path: "/header", header: http.Header{"X-Tenant": {"globex"}}, claims: member, want: InsufficientScope, reason: policy.ErrConditionUnmet},
		{name: "no header: an error, refused", path: "/header", claims: member, want: InsufficientScope, reason: policy.ErrConditionError},

		{name: "a Thursday at 13:00 in Amsterdam", path: "/weekdays", claims: member, want: Allow},
		{name: "cost limit: refused", path: "/costly", claims: with(map[string]any{"groups": many}), want: InsufficientScope, reason: policy.ErrConditionError},
		{name: "cheap enough", path: "/costly", claims: member, want: Allow},

		{name: "match true: the public rule", path: "/flagged", header: http.Header{"X-Flag": {"on"}}, noToken: true, want: Allow},
		{name: "match false: the default rule", path: "/flagged", header: http.Header{"X-Flag": {"off"}}, noToken: true, want: NoCredentials},
		{name: "match error: refused, not public, not the next rule", path: "/flagged", noToken: true, want: InsufficientScope, reason: policy.ErrConditionError},
		{name: "match error with a valid token: refused", path: "/flagged", claims: member, want: InsufficientScope, reason: policy.ErrConditionError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{Method: "GET", Host: "api.example", Path: tt.path, Headers: testHeaders(tt.header),
				ContentType: tt.header.Get("Content-Type"), Body: policy.BodyPresent}
			if tt.method != "" {
				r.Method = tt.method
			}
			if tt.host != "" {
				r.Host = tt.host
			}
			if !tt.noToken {
				r.Authorization = []string{"Bearer " + e.mint(t, tt.claims)}
			}
			d := e.az.Decide(context.Background(), r)
			assert.Equal(t, tt.want.String(), d.Outcome.String(), "reason %v, detail %s", d.Reason, d.Detail)
			if tt.reason != nil {
				assert.Equal(t, tt.reason, d.Reason, d.Detail)
			}
			if tt.www != "" {
				assert.Equal(t, tt.www, headerOf(d.ClientHeaders(Challenges{Realm: "api"}), "www-authenticate"))
			}
			if d.Reason == policy.ErrConditionUnmet || d.Reason == policy.ErrConditionError {
				assert.NotContains(t, headerOf(d.ClientHeaders(Challenges{Realm: "api"}), "www-authenticate"), "claims", "the expression is never echoed")
				assert.NotContains(t, string(d.Body()), "claims")
				assert.Contains(t, d.Detail, "cel[", "the log says which expression")
			}
		})
	}
}

// testHeaders reads an http.Header by lower-case name, as the front ends give theirs.
type testHeaders http.Header

func (h testHeaders) Values(name string) []string { return http.Header(h).Values(name) }
func (h testHeaders) Each(fn func(name, value string)) {
	for k, vs := range h {
		for _, v := range vs {
			fn(strings.ToLower(k), v)
		}
	}
}

func TestStepUpAnswers(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(loadPolicy(t, `rules:
  - name: acr-only
    match: { path: /acr }
    require: { acr: [urn:okta:loa:2fa:any, phr] }
  - name: age-only
    match: { path: /age }
    require: { max_age: 90s }
`))
	for path, want := range map[string]string{
		"/acr": `Bearer realm="api", error="insufficient_user_authentication", error_description="A stronger authentication is required for this resource", acr_values="urn:okta:loa:2fa:any phr"`,
		"/age": `Bearer realm="api", error="insufficient_user_authentication", error_description="A more recent authentication is required for this resource", max_age=90`,
	} {
		d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + e.mint(t, nil)}})
		require.Equal(t, InsufficientAuthentication, d.Outcome, path)
		assert.Equal(t, 401, d.HTTPStatus())
		assert.Equal(t, "Unauthenticated", d.Outcome.GRPCCode().String())
		assert.Equal(t, want, headerOf(d.ClientHeaders(Challenges{Realm: "api"}), "www-authenticate"))
		assert.JSONEq(t, `{"error":"insufficient_user_authentication","error_description":"`+d.Reason.Description+`"}`, string(d.Body()))
	}
}

// TestConditionLogs: a refused condition and an error are logged with the expression and the
// error, never the token.
func TestConditionLogs(t *testing.T) {
	e := newEnv(t, nil)
	var logs bytes.Buffer
	az := NewAuthorizer(e.v, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Policy: loadPolicy(t, conditionsPolicy)})
	tok := e.mint(t, map[string]any{"tenant": "acme"})
	az.Decide(context.Background(), &Request{Method: "GET", Path: "/header", Authorization: []string{"Bearer " + tok}})
	out := logs.String()
	assert.Contains(t, out, `"reason":"condition_error"`)
	assert.Contains(t, out, `require.cel[0] request.headers[\"x-tenant\"] == claims.tenant under GET /header: no such key: x-tenant`)
	assert.NotContains(t, out, tok)
}

// TestDryRunCondition: a dry-run rule only logs what its conditions would refuse.
func TestDryRunCondition(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(loadPolicy(t, "rules:\n  - name: d\n    match: { path: /d }\n    dry_run: true\n    require: { cel: 'claims.tenant == \"x\"', max_age: 1m }\n"))
	d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: "/d", Authorization: []string{"Bearer " + e.mint(t, nil)}})
	require.Equal(t, Allow, d.Outcome)
	require.NotNil(t, d.WouldBe)
	assert.Equal(t, policy.ErrConditionError, d.WouldBe.Reason)
}

// TestCredentialPlaces: a rule reads its token where it says; two places or a repeated one are
// refused; the token never reaches the upstream.
func TestCredentialPlaces(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(loadPolicy(t, `rules:
  - name: ws
    match: { path: /ws }
    credentials: [authorization, "query:access_token"]
  - name: cookie
    match: { path: /app }
    credentials: ["cookie:at"]
  - name: header
    match: { path: /hdr }
    credentials: ["header:x-api-token"]
  - name: WS-upper
    match: { path: /WS }
`))
	tok, other := e.mint(t, nil), e.mint(t, map[string]any{"sub": "someone-else"})
	// Every allow keeps every token place of the policy from the upstream, not only its own.
	removed := append(slices.Clone(CredentialHeaders), "x-api-token")
	tests := []struct {
		name      string
		path      string
		authz     string
		header    http.Header
		want      Outcome
		reason    *Reason
		place     token.Place
		removed   []string
		cookie    string
		param     string
		noCookies bool
	}{
		{name: "query", path: "/ws?room=1&access_token=" + tok, want: Allow, place: token.Place{Kind: token.InQuery, Name: "access_token"},
			removed: removed, param: "access_token"},
		{name: "authorization on the same rule", path: "/ws?room=1", authz: "Bearer " + tok, want: Allow, removed: removed},
		{name: "both: two places", path: "/ws?access_token=" + tok, authz: "Bearer " + tok, want: InvalidRequest, reason: token.ErrMultipleTokens},
		{name: "parameter twice", path: "/ws?access_token=" + tok + "&access_token=" + tok, want: InvalidRequest, reason: token.ErrMultipleTokens},
		{name: "encoded parameter name", path: "/ws?access%5Ftoken=" + tok, want: InvalidRequest, reason: token.ErrEncodedTokenParameter},
		{name: "a query token where the rule does not read it", path: "/other?access_token=" + tok, want: NoCredentials},
		{name: "bad query token", path: "/ws?access_token=x.y.z", want: InvalidToken, reason: token.ErrMalformed},
		{name: "cookie", path: "/app", header: http.Header{"Cookie": {"theme=dark; at=" + tok + "; lang=nl"}}, want: Allow,
			place: token.Place{Kind: token.InCookie, Name: "at"}, removed: removed, cookie: "theme=dark; lang=nl"},
		{name: "the only cookie", path: "/app", header: http.Header{"Cookie": {"at=" + tok}}, want: Allow,
			place: token.Place{Kind: token.InCookie, Name: "at"}, removed: append(slices.Clone(removed), "cookie"), noCookies: true},
		{name: "authorization where only a cookie is read", path: "/app", authz: "Bearer " + tok, want: NoCredentials},
		{name: "header", path: "/hdr", header: http.Header{"X-Api-Token": {tok}}, want: Allow,
			place: token.Place{Kind: token.InHeader, Name: "x-api-token"}, removed: removed},
		// A browser sends its cookies to every route: a token cookie never reaches the upstream,
		// nor a token header, wherever the request's token came from.
		{name: "token cookie and header where the rule reads the Authorization", path: "/other", authz: "Bearer " + tok,
			header: http.Header{"Cookie": {"theme=dark; at=" + other + "; AT=x"}, "X-Api-Token": {other}}, want: Allow,
			removed: removed, cookie: "theme=dark"},
		{name: "only a token cookie where the rule reads the query", path: "/ws?access_token=" + tok,
			header: http.Header{"Cookie": {"at=" + other}}, want: Allow, place: token.Place{Kind: token.InQuery, Name: "access_token"},
			removed: append(slices.Clone(removed), "cookie"), param: "access_token"},
		// /Ws reads as /ws (query and authorization) and as /WS (authorization only): the token
		// must be one every rule reads.
		{name: "a reading whose rule does not read the query", path: "/Ws?access_token=" + tok, want: NoCredentials},
		{name: "a reading whose rule reads the Authorization", path: "/Ws", authz: "Bearer " + tok, want: Allow, removed: removed},
		{name: "tokens in two places, one of them read by one reading only", path: "/Ws?access_token=" + tok, authz: "Bearer " + tok,
			want: InvalidRequest, reason: token.ErrMultipleTokens},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{Method: "GET", Path: tt.path, Headers: testHeaders(tt.header)}
			if tt.authz != "" {
				r.Authorization = []string{tt.authz}
			}
			d := e.az.Decide(context.Background(), r)
			require.Equal(t, tt.want.String(), d.Outcome.String(), "reason %v, detail %s", d.Reason, d.Detail)
			if tt.reason != nil {
				assert.Equal(t, tt.reason, d.Reason)
				assert.NotContains(t, d.Detail, tok, "the log never names the token")
			}
			if tt.want != Allow {
				return
			}
			assert.Equal(t, tt.place, d.Credential)
			assert.Equal(t, tt.removed, d.RemovedHeaders(d.UpstreamHeaders(), nil))
			assert.Equal(t, tt.param, d.RemovedQueryParameter())
			cookie, set := d.UpstreamCookie()
			assert.Equal(t, tt.cookie, cookie)
			assert.Equal(t, tt.cookie != "", set)
		})
	}
}

// TestForwardedTokenStaysInItsPlace: a rule that forwards the token keeps it where it came.
func TestForwardedTokenStaysInItsPlace(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(loadPolicy(t, "rules:\n  - name: ws\n    match: { path: /ws }\n    credentials: [\"query:t\", \"cookie:c\"]\n    identity: { forward_authorization: true }\n"))
	for _, r := range []*Request{
		{Method: "GET", Path: "/ws?t=" + e.mint(t, nil)},
		{Method: "GET", Path: "/ws", Headers: testHeaders{"Cookie": {"c=" + e.mint(t, nil)}}},
	} {
		d := e.az.Decide(context.Background(), r)
		require.Equal(t, Allow, d.Outcome, d.Detail)
		assert.Empty(t, d.RemovedQueryParameter())
		_, set := d.UpstreamCookie()
		assert.False(t, set)
		assert.Empty(t, d.RemovedHeaders(d.UpstreamHeaders(), nil))
	}
}

// TestQueryTokenNeverLogged: the decision log names the path without its query, whatever the
// decision, and a detail never holds the token (a malformed one included).
func TestQueryTokenNeverLogged(t *testing.T) {
	e := newEnv(t, nil)
	var logs bytes.Buffer
	az := NewAuthorizer(e.v, Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DecisionLog: DecisionLogAll, Policy: loadPolicy(t, "rules:\n  - name: ws\n    match: { path: /ws }\n    credentials: [\"query:access_token\"]\n")})
	tok := e.mint(t, nil)
	bad := tok[:len(tok)-4] + "AAAA"
	for _, target := range []string{"/ws?access_token=" + tok, "/ws?access_token=" + bad, "/ws?access_token=" + tok + "&access_token=" + tok,
		"/ws?access_token=" + tok[:40] + "%zz", "/other?access_token=" + tok, "/ws?access%5Ftoken=" + tok} {
		az.Decide(context.Background(), &Request{Method: "GET", Path: target})
	}
	out := logs.String()
	require.Equal(t, 6, strings.Count(out, `"msg":"authz decision"`), out)
	for _, secret := range []string{tok, bad, tok[:40]} {
		assert.NotContains(t, out, secret)
	}
	assert.Contains(t, out, `"path":"/ws"`)
}

// TestConditionsNeverSeeForgeableHeaders: request.headers holds no credential, no raw target and
// no identity header — a client's x-authz-* or claim-header copy is a forgery, not a fact.
func TestConditionsNeverSeeForgeableHeaders(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(loadPolicy(t, `identity:
  claims: [{header: x-user, claim: sub}]
rules:
  - name: r
    match: { path: /r }
    credentials: [authorization, "header:x-api-token"]
    require:
      cel:
        - request.headers.size() == 1 && request.headers["x-tenant"] == "acme"
`))
	tok := e.mint(t, nil)
	forged := http.Header{"X-Tenant": {"acme"}}
	for _, h := range []string{"X-Authz-Subject", "X-Authz-Anything", "X-User", "Proxy-Authorization", "Cookie", "Dpop",
		"X-Original-Uri", "X-Forwarded-Uri", "X-Envoy-Original-Path"} {
		forged.Set(h, "admin")
	}
	d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: "/r", Authorization: []string{"Bearer " + tok},
		Headers: testHeaders(forged)})
	assert.Equal(t, Allow, d.Outcome, "%v %s", d.Reason, d.Detail)
}
