package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPolicyClaimTestsReadExactNames: a policy's claim test on groups does not read a custom
// claim named Groups (or GROUPS2).
func TestPolicyClaimTestsReadExactNames(t *testing.T) {
	e := newEnv(t, nil)
	priv, kid := e.idp.PrivateKey()
	iss := e.idp.Issuer()
	future := t0.Add(time.Hour).Unix()
	base := fmt.Sprintf(`"iss":%q,"aud":"api://default","cid":"c","iat":%d`, iss, t0.Unix())
	payload := func(members string) string { return "{" + base + "," + members + "}" }
	pol, err := policy.Load([]byte("rules:\n  - name: admins\n    match: { path: /admin }\n    require:\n      claims: [{ claim: groups, contains: admin }]\n"), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(pol)
	tok := signRaw(t, priv, jwa.RS256(), map[string]any{"kid": kid},
		payload(fmt.Sprintf(`"exp":%d,"sub":"ada","groups":["staff"],"Groups_":1,"GROUPS2":["admin"]`, future)))
	d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: "/admin", Authorization: []string{"Bearer " + tok}})
	assert.Equal(t, policy.ErrClaimMismatch, d.Reason)
}

// TestNumbersKeepTheirJSONForm: an integer beyond 2^53 reaches a claim header as written and
// compares exactly in a policy; numbers compare by value whatever their spelling.
func TestNumbersKeepTheirJSONForm(t *testing.T) {
	e := newEnv(t, nil)
	src := `
identity:
  claims: [{ header: x-employee, claim: emp }]
rules:
  - name: exact
    match: { path: /exact }
    require: { claims: [{ claim: emp, equals: 9007199254740993 }] }
  - name: spelled
    match: { path: /spelled }
    require: { claims: [{ claim: level, one_of: [1, 2] }] }
`
	pol, err := policy.Load([]byte(src), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(pol)
	priv, kid := e.idp.PrivateKey()
	claims := e.idp.Claims(devTokenRequest())
	raw, err := json.Marshal(claims)
	require.NoError(t, err)
	body := strings.TrimSuffix(string(raw), "}")
	decide := func(path, extra string) Decision {
		tok := signRaw(t, priv, jwa.RS256(), map[string]any{"kid": kid}, body+","+extra+"}")
		return e.az.Decide(context.Background(), &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + tok}})
	}

	d := decide("/exact", `"emp":9007199254740993,"level":1`)
	require.Equal(t, Allow, d.Outcome, "%v %s", d.Reason, d.Detail)
	assert.Contains(t, d.UpstreamHeaders(), Header{"x-employee", "9007199254740993"})

	d = decide("/exact", `"emp":9007199254740992`)
	assert.Equal(t, policy.ErrClaimMismatch, d.Reason, "2^53 is not 2^53+1")

	for _, level := range []string{"1", "1.0", "1e0", "2.00", "0.2e1"} {
		d = decide("/spelled", `"level":`+level)
		assert.Equal(t, Allow, d.Outcome, "level %s: %v", level, d.Reason)
	}
	d = decide("/spelled", `"level":"1"`)
	assert.Equal(t, policy.ErrClaimMismatch, d.Reason, "a string is not a number")
}
