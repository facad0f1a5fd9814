package token

import (
	"context"
	"encoding/base64"
	"fmt"
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
		{"dotless i spelling iss alone (Java)", fmt.Sprintf(`"exp":%d,"sub":"ada","\u0131ss":"https://evil.example"`, future), ErrAmbiguousClaims, nil, ""},
		{"Exp alone is not exp", fmt.Sprintf(`"Exp":%d,"sub":"ada"`, future), ErrAmbiguousClaims, nil, ""},
		{"nested case variant", fmt.Sprintf(`"exp":%d,"address":{"country":"US","Country":"FR"}`, future), ErrAmbiguousClaims, nil, ""},
		{"custom Groups is just another claim", fmt.Sprintf(`"exp":%d,"sub":"ada","Groups":["admin"]`, future), nil, nil, "ada"},
		{"cid and client_id disagree", fmt.Sprintf(`"exp":%d,"sub":"ada","client_id":"other"`, future), ErrAmbiguousClaims, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := signRaw(t, priv, jwa.RS256(), map[string]any{"kid": kid}, payload(tc.members))
			c, err := e.v.Verify(context.Background(), tok)
			if tc.want != nil {
				assert.Equal(t, tc.want, ReasonOf(err), "err %v", err)
				assert.Nil(t, c, "no claims of a refused payload")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.sub, c.Subject)
			assert.Equal(t, tc.scopes, c.Scopes)
		})
	}

	t.Run("client_id names the client without cid (RFC 9068, Hydra)", func(t *testing.T) {
		tok := signRaw(t, priv, jwa.RS256(), map[string]any{"kid": kid},
			fmt.Sprintf(`{"iss":%q,"aud":"api://default","exp":%d,"client_id":"hydra-client","sub":"s"}`, iss, future))
		c, err := e.v.Verify(context.Background(), tok)
		require.NoError(t, err)
		assert.Equal(t, "hydra-client", c.ClientID)
	})

	t.Run("header members are exact too", func(t *testing.T) {
		hdr := fmt.Sprintf(`{"alg":"RS256","kid":%q,"KID":"other"}`, kid)
		tok := rawHeaderToken(hdr, payload(fmt.Sprintf(`"exp":%d`, future)))
		_, err := e.v.Verify(context.Background(), tok)
		assert.Equal(t, ErrMalformed, ReasonOf(err), "err %v", err)
	})
}

// rawHeaderToken is a token with a raw JSON header and payload and a junk signature.
func rawHeaderToken(hdr, payload string) string {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	return enc(hdr) + "." + enc(payload) + ".c2ln"
}
