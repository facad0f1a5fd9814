package authz

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRenderClaim(t *testing.T) {
	decode := func(js string) any {
		var v any
		require.NoError(t, json.Unmarshal([]byte(js), &v))
		return v
	}
	tests := []struct {
		name, claim, sep string
		want             string
		absent           bool
		refused          bool
	}{
		{"string", `"ada@example.com"`, ",", "ada@example.com", false, false},
		{"unicode kept as UTF-8", `"Zoë Ørsted"`, ",", "Zoë Ørsted", false, false},
		{"integer", `42`, ",", "42", false, false},
		{"large integer", `1796000000`, ",", "1796000000", false, false},
		{"float", `1.5`, ",", "1.5", false, false},
		{"boolean", `true`, ",", "true", false, false},
		{"array of strings", `["admins","users"]`, ",", "admins,users", false, false},
		{"array, another separator", `["admins","users"]`, " ", "admins users", false, false},
		{"array of mixed scalars", `["a",1,false]`, ",", "a,1,false", false, false},
		{"array holding an object", `["a",{"b":1}]`, ",", `["a",{"b":1}]`, false, false},
		{"object as compact JSON", `{"country":"NL","city":"Delft <&>"}`, ",", `{"city":"Delft <&>","country":"NL"}`, false, false},
		{"null", `null`, ",", "", true, false},
		{"empty string", `""`, ",", "", true, false},
		{"empty array", `[]`, ",", "", true, false},
		{"tab is allowed", "\"a\\tb\"", ",", "a\tb", false, false},
		{"CR LF", "\"x\\r\\nX-Admin: 1\"", ",", "", false, true},
		{"NUL", "\"x\\u0000y\"", ",", "", false, true},
		{"DEL", "\"x\\u007fy\"", ",", "", false, true},
		{"CR LF inside an array", "[\"a\",\"b\\nc\"]", ",", "", false, true},
		{"oversized", `"` + strings.Repeat("a", MaxClaimHeaderBytes+1) + `"`, ",", "", false, true},
		{"at the size limit", `"` + strings.Repeat("a", MaxClaimHeaderBytes) + `"`, ",", strings.Repeat("a", MaxClaimHeaderBytes), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, present, err := renderClaim(decode(tt.claim), tt.sep)
			if tt.refused {
				assert.ErrorIs(t, err, ErrClaimUnforwardable)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, !tt.absent, present)
			assert.Equal(t, tt.want, got)
		})
	}
}

const identityPolicy = `
identity:
  claims:
    - { header: x-user-email, claim: email }
    - { header: x-user-groups, claim: groups }
    - { header: x-user-country, claim: address.country }
    - { header: x-tenant, claim: [https://example.com/claims, tenant] }
  metadata: [email, tenant_id]
rules:
  - name: lean
    match: { path: /lean }
    identity:
      claims_header: false
      claims: [{ header: x-user-email, claim: email }]
  - name: passthrough
    match: { path: /passthrough }
    identity: { forward_authorization: true }
`

func TestIdentityHeaders(t *testing.T) {
	e := newEnv(t, nil)
	p, err := policy.Load([]byte(identityPolicy), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(p)
	assert.Equal(t, []string{"x-tenant", "x-user-country", "x-user-email", "x-user-groups"}, p.IdentityHeaders())
	tok := e.mint(t, map[string]any{"email": "ada@example.com", "groups": []string{"admins", "users"},
		"address": map[string]any{"country": "NL"}, "https://example.com/claims": map[string]any{"tenant": "t-1"},
		"tenant_id": "t-1"})
	decide := func(path string) Decision {
		return e.az.Decide(context.Background(), &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + tok}})
	}

	d := decide("/api/messages")
	require.Equal(t, Allow, d.Outcome, "%v", d.Reason)
	hs := map[string]string{}
	for _, h := range d.UpstreamHeaders() {
		hs[h.Name] = h.Value
	}
	assert.Equal(t, "ada@example.com", hs["x-user-email"])
	assert.Equal(t, "admins,users", hs["x-user-groups"])
	assert.Equal(t, "NL", hs["x-user-country"])
	assert.Equal(t, "t-1", hs["x-tenant"], "a claim whose name has dots, by segments")
	assert.NotEmpty(t, hs[policy.HeaderClaims], "the whole payload by default")
	assert.Equal(t, []string{"authorization", "dpop"}, d.RemovedHeaders(d.UpstreamHeaders(), nil), "the token is not forwarded by default")
	meta := map[string]string{}
	for _, f := range d.MetadataFields() {
		meta[f.Name] = f.Value
	}
	assert.Equal(t, "ada@example.com", meta["email"])
	assert.Equal(t, "t-1", meta["tenant_id"])

	lean := decide("/lean")
	var names []string
	for _, h := range lean.UpstreamHeaders() {
		names = append(names, h.Name)
	}
	assert.Equal(t, []string{policy.HeaderSubject, policy.HeaderClientID, policy.HeaderScopes, "x-user-email"}, names, "a rule's identity goes over the file's")

	pass := decide("/passthrough")
	assert.Empty(t, pass.RemovedHeaders(pass.UpstreamHeaders(), nil), "forward_authorization keeps the token")

	// A claim the token lacks: the header is absent, and a client's copy is removed.
	bare := e.mint(t, nil)
	d = e.az.Decide(context.Background(), &Request{Method: "GET", Path: "/api/messages", Authorization: []string{"Bearer " + bare}})
	require.Equal(t, Allow, d.Outcome)
	assert.Contains(t, d.RemovedHeaders(d.UpstreamHeaders(), []string{"x-user-email"}), "x-user-email")
}

func TestUnforwardableClaimIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	p, err := policy.Load([]byte(identityPolicy), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(p)
	tok := e.mint(t, map[string]any{"email": "ada@example.com\r\nX-Authz-Subject: admin"})
	d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: "/api/messages", Authorization: []string{"Bearer " + tok}})
	assert.Equal(t, InvalidToken, d.Outcome, "never a header injection")
	assert.Equal(t, ErrClaimUnforwardable, d.Reason)
	assert.Empty(t, d.UpstreamHeaders())
}

// TestIdentityReloadTakesEffect: a new policy's mapping applies from the next request, even
// for a token whose rendered headers are cached.
func TestIdentityReloadTakesEffect(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.mint(t, map[string]any{"email": "ada@example.com", "dept": "eng"})
	r := &Request{Method: "GET", Path: "/x", Authorization: []string{"Bearer " + tok}}
	load := func(claims string) {
		p, err := policy.Load([]byte("identity:\n  claims: "+claims+"\n"), []string{"default"})
		require.NoError(t, err)
		e.az.SetPolicy(p)
	}
	value := func(name string) string {
		d := e.az.Decide(context.Background(), r)
		for _, h := range d.UpstreamHeaders() {
			if h.Name == name {
				return h.Value
			}
		}
		return ""
	}
	load("[{header: x-user, claim: email}]")
	assert.Equal(t, "ada@example.com", value("x-user"))
	load("[{header: x-user, claim: dept}]")
	assert.Equal(t, "eng", value("x-user"))
}

// TestUnforwardableClaimOnlyForTheForwardingRule: a claim only the file's identity forwards,
// and cannot (a control character), refuses no request that a rule with its own identity
// allows — even when another reading of the request (HEAD as GET) is judged by a rule with the
// file's identity. Only the rule whose allow is forwarded renders its identity.
func TestUnforwardableClaimOnlyForTheForwardingRule(t *testing.T) {
	e := newEnv(t, nil)
	e.az.SetPolicy(must(policy.Load([]byte(`
identity:
  claims: [{ header: x-bad, claim: bad }]
rules:
  - name: own
    match: { path: /x, methods: [HEAD] }
    identity:
      claims: [{ header: x-ok, claim: sub }]
`), []string{"default"})))
	tok := e.mint(t, map[string]any{"bad": "a\nb"})
	d := e.az.Decide(context.Background(), &Request{Method: "HEAD", Host: "h", Path: "/x", Authorization: []string{"Bearer " + tok}})
	require.Equal(t, Allow, d.Outcome, "%v %s", d.Reason, d.Detail)
	assert.Equal(t, "own", d.Rule)
	assert.Contains(t, d.UpstreamHeaders(), Header{"x-ok", "test-client"})

	// Where the file's identity is the one forwarded, the claim still refuses.
	d = e.az.Decide(context.Background(), &Request{Method: "GET", Host: "h", Path: "/x", Authorization: []string{"Bearer " + tok}})
	assert.Equal(t, ErrClaimUnforwardable, d.Reason)
}
