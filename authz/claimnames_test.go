package authz

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClaimNamesAreExact: claims are read by their exact names, and a payload whose names a
// case-insensitive reader (Go's encoding/json, which many upstreams use on x-authz-claims)
// would take for one another is refused — it used to be read case-insensitively, last one
// winning: an expired token with a future "Exp" was allowed, "SCP" granted scopes.
func TestClaimNamesAreExact(t *testing.T) {
	e := newEnv(t, nil)
	e.v.cache = nil
	priv, kid := e.idp.PrivateKey()
	iss := e.idp.Issuer()
	past, future := t0.Add(-time.Hour).Unix(), t0.Add(time.Hour).Unix()
	base := fmt.Sprintf(`"iss":%q,"aud":"api://default","cid":"c","iat":%d`, iss, t0.Unix())
	payload := func(members string) string { return "{" + base + "," + members + "}" }

	for _, tc := range []struct {
		name, members string
		want          *Reason // nil: valid
		scopes        []string
		sub           string
	}{
		{"exact names", fmt.Sprintf(`"exp":%d,"sub":"ada","scp":["messages:read"]`, future), nil, []string{"messages:read"}, "ada"},
		{"Exp after an expired exp", fmt.Sprintf(`"exp":%d,"Exp":%d,"sub":"ada"`, past, future), ErrAmbiguousClaims, nil, ""},
		{"exp twice", fmt.Sprintf(`"exp":%d,"exp":%d,"sub":"ada"`, past, future), ErrAmbiguousClaims, nil, ""},
		{"escaped exp after exp", fmt.Sprintf(`"exp":%d,"\u0065xp":%d`, past, future), ErrAmbiguousClaims, nil, ""},
		{"AUD after a wrong aud", fmt.Sprintf(`"exp":%d,"aud":"api://other","AUD":"api://default"`, future), ErrAmbiguousClaims, nil, ""},
		{"SCP after scp", fmt.Sprintf(`"exp":%d,"scp":["messages:read"],"SCP":["admin"]`, future), ErrAmbiguousClaims, nil, ""},
		{"Scope next to scp", fmt.Sprintf(`"exp":%d,"scp":["messages:read"],"Scope":"admin"`, future), ErrAmbiguousClaims, nil, ""},
		{"Sub after sub", fmt.Sprintf(`"exp":%d,"sub":"ada","Sub":"root"`, future), ErrAmbiguousClaims, nil, ""},
		{"Sub alone", fmt.Sprintf(`"exp":%d,"Sub":"root"`, future), ErrAmbiguousClaims, nil, ""},
		{"long s spelling sub", fmt.Sprintf(`"exp":%d,"sub":"ada","\u017fub":"root"`, future), ErrAmbiguousClaims, nil, ""},
		{"Exp alone is not exp", fmt.Sprintf(`"Exp":%d,"sub":"ada"`, future), ErrAmbiguousClaims, nil, ""},
		{"nested case variant", fmt.Sprintf(`"exp":%d,"address":{"country":"US","Country":"FR"}`, future), ErrAmbiguousClaims, nil, ""},
		{"custom Groups is just another claim", fmt.Sprintf(`"exp":%d,"sub":"ada","Groups":["admin"]`, future), nil, nil, "ada"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := signRaw(t, priv, jwa.RS256(), map[string]any{"kid": kid}, payload(tc.members))
			c, err := e.v.Verify(context.Background(), tok)
			if tc.want != nil {
				assert.Equal(t, tc.want, reasonOf(err), "err %v", err)
				assert.Nil(t, c, "no claims of a refused payload")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.sub, c.Subject)
			assert.Equal(t, tc.scopes, c.Scopes)
		})
	}

	t.Run("policy claim tests read exact names", func(t *testing.T) {
		pol, err := LoadPolicy([]byte("rules:\n  - name: admins\n    match: { path: /admin }\n    require:\n      claims: [{ claim: groups, contains: admin }]\n"), []string{"default"})
		require.NoError(t, err)
		e.az.SetPolicy(pol)
		tok := signRaw(t, priv, jwa.RS256(), map[string]any{"kid": kid},
			payload(fmt.Sprintf(`"exp":%d,"sub":"ada","groups":["staff"],"Groups_":1,"GROUPS2":["admin"]`, future)))
		d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: "/admin", Authorization: []string{"Bearer " + tok}})
		assert.Equal(t, ErrClaimMismatch, d.Reason)
	})

	t.Run("header members are exact too", func(t *testing.T) {
		hdr := fmt.Sprintf(`{"alg":"RS256","kid":%q,"KID":"other"}`, kid)
		tok := rawHeaderToken(hdr, payload(fmt.Sprintf(`"exp":%d`, future)))
		_, err := e.v.Verify(context.Background(), tok)
		assert.Equal(t, ErrMalformed, reasonOf(err), "err %v", err)
	})
}

// rawHeaderToken is a token with a raw JSON header and payload and a junk signature.
func rawHeaderToken(hdr, payload string) string {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	return enc(hdr) + "." + enc(payload) + ".c2ln"
}

// TestNumbersKeepTheirJSONForm: an integer beyond 2^53 reaches a claim header as written and
// compares exactly in a policy; numbers compare by value whatever their spelling.
func TestNumbersKeepTheirJSONForm(t *testing.T) {
	e := newEnv(t, nil)
	policy := `
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
	pol, err := LoadPolicy([]byte(policy), []string{"default"})
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
	assert.Equal(t, ErrClaimMismatch, d.Reason, "2^53 is not 2^53+1")

	for _, level := range []string{"1", "1.0", "1e0", "2.00", "0.2e1"} {
		d = decide("/spelled", `"level":`+level)
		assert.Equal(t, Allow, d.Outcome, "level %s: %v", level, d.Reason)
	}
	d = decide("/spelled", `"level":"1"`)
	assert.Equal(t, ErrClaimMismatch, d.Reason, "a string is not a number")
}
