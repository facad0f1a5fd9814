package dpop

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestObject(t *testing.T) {
	read := []string{"htm", "jti", "jwk"}
	tests := []struct {
		in   string
		want map[string]string // nil: refused
	}{
		{`{}`, map[string]string{}},
		{` {"htm":"GET", "x":[1,{"htm":2}]} `, map[string]string{"htm": `"GET"`, "x": `[1,{"htm":2}]`}},
		{`{"HTMX":1,"Other":2,"other":3}`, map[string]string{"HTMX": "1", "Other": "2", "other": "3"}},
		{`{"htm":"GET","htm":"POST"}`, nil},
		{`{"htm":"GET","HTM":"POST"}`, nil},
		{`{"Jti":"a"}`, nil},
		{`{"jw\u212a":{}}`, nil}, // the Kelvin sign folds to k
		{`{"a":1,"a":1}`, nil},
		{`{"\ud800":1,"\udfff":2}`, nil}, // both decode to U+FFFD: the same name
		{`{"a":1}{}`, nil},
		{`{"a":1} x`, nil},
		{`{"a":1`, nil},
		{`{"a":1,}`, nil},
		{`{"a" 1}`, nil},
		{`{1:1}`, nil},
		{`[]`, nil},
		{`"s"`, nil},
		{``, nil},
	}
	for _, tt := range tests {
		got, err := object([]byte(tt.in), read...)
		if tt.want == nil {
			assert.Error(t, err, "%s", tt.in)
			continue
		}
		require.NoError(t, err, "%s", tt.in)
		gotS := map[string]string{}
		for k, v := range got {
			gotS[k] = string(v)
		}
		assert.Equal(t, tt.want, gotS, "%s", tt.in)
	}
}

// FuzzObject: whatever object accepts, encoding/json reads the same way — as one object whose
// members decode, by a struct's case-insensitive matching, to exactly the values object reads
// by exact name. That is the gap a case variant or a duplicate would open; none is left.
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"jti":"a","htm":"GET"}`, `{"htm":"GET","HTM":"POST"}`, `{"j\u0074i":1}`,
		`{"jti":"a","x":{"jti":"b"}}`, `{"Htu":"x"}`, `{"a":1}{}`, `{"iat":1.5e9}`, `{"\ud800":1}`} {
		f.Add([]byte(s))
	}
	type claims struct {
		JTI json.RawMessage `json:"jti"`
		HTM json.RawMessage `json:"htm"`
		HTU json.RawMessage `json:"htu"`
		IAT json.RawMessage `json:"iat"`
		ATH json.RawMessage `json:"ath"`
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := object(b, "jti", "htm", "htu", "iat", "ath")
		if err != nil {
			return
		}
		var all map[string]json.RawMessage
		if err := json.Unmarshal(b, &all); err != nil {
			t.Fatalf("object accepted %q, encoding/json refuses it: %v", b, err)
		}
		if len(all) != len(m) {
			t.Fatalf("object read %d members of %q, encoding/json %d", len(m), b, len(all))
		}
		var c claims
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("object accepted %q, encoding/json refuses it: %v", b, err)
		}
		for name, got := range map[string]json.RawMessage{"jti": c.JTI, "htm": c.HTM, "htu": c.HTU, "iat": c.IAT, "ath": c.ATH} {
			if want := m[name]; string(got) != string(want) {
				t.Fatalf("%q: %s is %s by exact name, %s case-insensitively", b, name, want, got)
			}
		}
	})
}

// FuzzVerifyClaims signs each fuzzed payload, so that the claims parser is reached (FuzzVerify's
// inputs rarely get past the signature): never a panic, a Failure or a proof, and an accepted
// proof's claims are what encoding/json reads too.
func FuzzVerifyClaims(f *testing.F) {
	tt := &testing.T{}
	header := `{"typ":"dpop+jwt","alg":"ES256","jwk":` + publicJWK(tt, ecKey, "") + `}`
	iat := fmt.Sprint(t0.Unix())
	for _, s := range []string{
		`{"jti":"a","htm":"GET","htu":"` + uri + `","iat":` + iat + `,"ath":"` + ath(token) + `"}`,
		`{"jti":"a","htm":"GET","HTM":"POST","htu":"` + uri + `","iat":` + iat + `,"ath":"` + ath(token) + `"}`,
		`{"jti":"a","htm":"GET","htu":"` + uri + `","iat":` + iat + `.5,"ath":null}`,
	} {
		f.Add([]byte(s))
	}
	v, err := New(Options{Now: func() time.Time { return t0 }})
	require.NoError(f, err)
	var plain struct {
		JTI string  `json:"jti"`
		HTM string  `json:"htm"`
		IAT float64 `json:"iat"`
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > MaxProofBytes/2 {
			return
		}
		s := signRaw(t, ecKey, jwa.ES256(), header, string(payload))
		p, err := v.Verify([]string{s}, Request{Method: "GET", URI: uri, AccessToken: token})
		if err != nil {
			if _, ok := err.(*Failure); !ok {
				t.Fatalf("Verify(%q): %v is not a Failure", payload, err)
			}
			return
		}
		plain.JTI, plain.HTM, plain.IAT = "", "", 0
		if err := json.Unmarshal(payload, &plain); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", payload, err)
		}
		if plain.JTI != p.jti || plain.HTM != "GET" || int64(plain.IAT) != p.IssuedAt.Unix() {
			t.Fatalf("accepted %q: encoding/json reads jti %q htm %q iat %v", payload, plain.JTI, plain.HTM, plain.IAT)
		}
	})
}
