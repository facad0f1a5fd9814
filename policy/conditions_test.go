package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/policy/stepup"
	"github.com/platformauth/envoy-okta-authz/token"
)

// TestConditionErrorsAtTheirPlace: a wrong expression is refused when the policy loads, at its
// own line and column in the file, next to the file's other mistakes.
func TestConditionErrorsAtTheirPlace(t *testing.T) {
	file := `rules:
  - name: team
    match: { path_prefix: /teams, cel: 'request.method == 1' }
    require:
      cel: claims.groups.exists(g, g.startsWith("team-")) && claim.tenant == "a"
  - name: list
    match: { path: /list }
    require:
      cel:
        - request.host.endsWith(".example")
        - "claims.groups"
  - name: block
    match: { path: /block }
    require:
      cel: |
        request.host == "a" &&
          request.headers["x"] = "b"
  - name: match-reads-claims
    match: { path: /m, cel: claims.tenant == "a" }
  - name: typo
    match: { path: /t }
    require: { scopes: [a], ccel: "true" }
`
	_, err := Load([]byte(file), []string{"default"})
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		// 'request.method == 1': the column of "==" (the quote counted).
		`line 3, column 56: rule "team": match.cel: found no matching overload for '_==_' applied to '(string, int)'`,
		`line 5, column 62: rule "team": require.cel: undeclared reference to 'claim'`,
		`line 11, column 12: rule "list": require.cel[1]: the expression must be a condition (bool), not dyn`,
		// The literal block's second line, at its "=" (the block's indentation counted).
		`line 17, column 32: rule "block": require.cel: Syntax error`,
		`line 19, column 29: rule "match-reads-claims": match.cel: undeclared reference to 'claims'`,
		`line 22, column 29: rules[4].require has no key "ccel"; did you mean "cel"?`,
	} {
		assert.Contains(t, msg, want)
	}
	assert.Less(t, strings.Index(msg, "line 3,"), strings.Index(msg, "line 22,"), "errors in file order:\n%s", msg)
}

func TestStepUpAndCredentialsShape(t *testing.T) {
	_, err := Load([]byte(`credentials: [authorization, "query:a b"]
rules:
  - name: s
    match: { path: /s }
    require: { acr: ["urn:okta:loa:2fa:any", "two words"], max_age: 1500ms }
  - name: c
    match: { path: /c }
    credentials: [authorization, authorization, "cookie:", "header:cookie", "path:x"]
  - name: none
    match: { path: /n }
    credentials: []
  - name: p
    match: { path: /p }
    public: true
    require: { max_age: 10m }
  - name: neg
    match: { path: /neg }
    require: { max_age: -1m }
  - name: shape
    match: { path: /shape, cel: { a: b } }
`), []string{"default"})
	require.Error(t, err)
	for _, want := range []string{
		`line 1: credentials: "query:a b": a query parameter name`,
		`line 3: rule "s": acr "two words": a value without spaces`,
		`line 3: rule "s": max_age 1.5s: whole seconds`,
		`line 6: rule "c": credentials: authorization is named twice`,
		`line 6: rule "c": credentials: "cookie:": a cookie name`,
		`line 6: rule "c": credentials: "header:cookie": that header carries something else`,
		`line 6: rule "c": credentials: "path:x" is not authorization`,
		`line 9: rule "none": credentials: name at least one place`,
		`line 12: rule "p": public: true contradicts require`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.Contains(t, err.Error(), `line 18, column 25: rules[4].require.max_age: "-1m" is not a duration`)
	assert.Contains(t, err.Error(), `line 20, column 33: rules[5].match.cel: cel must be an expression or a list of expressions`)

	p, err := Load([]byte(`credentials: [authorization, "cookie:at"]
rules:
  - name: ws
    match: { path: /ws }
    credentials: ["query:access_token"]
    require: { acr: [urn:okta:loa:2fa:any], max_age: 10m }
  - name: api
    match: { path_prefix: /api }
    credentials: ["header:x-api-token"]
`), []string{"default"})
	require.NoError(t, err)
	assert.Equal(t, []token.Place{{Kind: token.InQuery, Name: "access_token"}}, p.Rules[0].Credentials)
	assert.Equal(t, &stepup.StepUp{ACR: []string{"urn:okta:loa:2fa:any"}, MaxAge: 10 * time.Minute}, p.Rules[0].StepUp)
	assert.Equal(t, 600, p.Rules[0].StepUp.MaxAgeSeconds())
	assert.Equal(t, []token.Place{token.Authorization, {Kind: token.InCookie, Name: "at"}}, p.Default.Credentials, "the file's places")
	assert.True(t, p.ReadsCookies())
	assert.True(t, p.isHidden("x-api-token"), "a token header is never shown to expressions")
	assert.True(t, p.NeedsClock())

	d, err := Load([]byte("rules:\n  - name: a\n    match: { path: /a }\n"), nil)
	require.NoError(t, err)
	assert.Equal(t, []token.Place{token.Authorization}, d.Rules[0].Credentials, "the default place")
	assert.Equal(t, []token.Place{token.Authorization}, Default(nil).Default.Credentials)
	assert.False(t, d.ReadsCookies())
	assert.False(t, d.NeedsClock(), "no expression, no step-up: no clock read")
}
