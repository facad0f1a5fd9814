package token

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAccessToken(t *testing.T) {
	tests := []struct {
		name     string
		values   []string
		want     string
		scheme   string
		noCreds  bool
		multiple bool
		wantErr  bool
	}{
		{name: "none", noCreds: true},
		{name: "basic only", values: []string{"Basic dXNlcjpwYXNz"}, noCreds: true},
		{name: "bearer", values: []string{"Bearer abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "scheme case-insensitive", values: []string{"bEaReR abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "extra spaces", values: []string{"  Bearer   abc.def.ghi  "}, want: "abc.def.ghi"},
		{name: "basic and bearer", values: []string{"Basic x", "Bearer abc"}, multiple: true},
		{name: "basic and bearer joined by envoy", values: []string{"Basic x,Bearer abc"}, multiple: true},
		{name: "two bearer headers", values: []string{"Bearer abc", "Bearer abc"}, multiple: true},
		{name: "joined by envoy", values: []string{"Bearer abc,Bearer def"}, multiple: true},
		{name: "joined with a space", values: []string{"Bearer abc, DPoP def"}, multiple: true},
		{name: "blank second header", values: []string{"Bearer abc", " "}, want: "abc"},
		{name: "digest auth-params are one set", values: []string{`Digest username="a", realm="b"`}, noCreds: true},
		{name: "dpop", values: []string{"DPoP abc.def.ghi"}, want: "abc.def.ghi", scheme: SchemeDPoP},
		{name: "dpop scheme case-insensitive", values: []string{"dpop abc.def.ghi"}, want: "abc.def.ghi", scheme: SchemeDPoP},
		{name: "bearer and dpop", values: []string{"Bearer abc", "DPoP abc"}, multiple: true},
		{name: "trailing comma", values: []string{"Bearer abc,"}, wantErr: true},
		{name: "empty token", values: []string{"Bearer "}, wantErr: true},
		{name: "scheme only", values: []string{"Bearer"}, wantErr: true},
		{name: "two tokens in one header", values: []string{"Bearer abc def"}, wantErr: true},
		{name: "padding allowed at end", values: []string{"Bearer abc=="}, want: "abc=="},
		{name: "padding in the middle", values: []string{"Bearer ab=c"}, wantErr: true},
		{name: "control character", values: []string{"Bearer abc\x00"}, wantErr: true},
		{name: "too large", values: []string{"Bearer " + strings.Repeat("a", MaxTokenBytes+1)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme, got, err := ParseAuthorization(tt.values)
			switch {
			case tt.noCreds:
				assert.ErrorIs(t, err, ErrNoCredentials)
			case tt.multiple:
				assert.ErrorIs(t, err, ErrMultipleCredentials)
			case tt.wantErr:
				assert.Error(t, err)
				assert.NotErrorIs(t, err, ErrNoCredentials)
			default:
				assert.NoError(t, err)
				assert.Equal(t, tt.want, got)
				want := tt.scheme
				if want == "" {
					want = SchemeBearer
				}
				assert.Equal(t, want, scheme)
			}
		})
	}
}

// FuzzBearerToken: any header value yields a token68 string or an error, never a panic.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer ", "Basic x", "Bearer a,Bearer b", "Bearer ===", "", "DPoP a.b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		_, tok, err := ParseAuthorization([]string{v})
		if err == nil && (tok == "" || !isToken68(tok) || strings.ContainsAny(tok, " ,")) {
			t.Fatalf("ParseAuthorization(%q) = %q, want a single token68 value", v, tok)
		}
	})
}

// FuzzVerify: hostile input never panics and never verifies without the issuer's key.
func FuzzVerify(f *testing.F) {
	e := newEnv(f, nil)
	valid := e.mint(f, nil)
	for _, s := range []string{valid, valid[:len(valid)-3], "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30.", `{"payload":""}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := e.v.Verify(context.Background(), tok)
		if err == nil && tok != valid {
			// Only a token signed by the issuer verifies; the fuzzer cannot forge RS256.
			// Re-encodings of the valid token's parts are the one legitimate way to pass.
			if c == nil || c.Subject != "test-client" {
				t.Fatalf("Verify(%q) succeeded with claims %+v", tok, c)
			}
		}
		if err != nil && ReasonOf(err) == nil {
			t.Fatalf("error without a reason: %v", err)
		}
	})
}
