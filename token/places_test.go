package token

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// headers is an http.Header read by lower-case names, as the front ends read theirs.
type headers http.Header

func (h headers) Values(name string) []string { return http.Header(h).Values(name) }

func TestParsePlace(t *testing.T) {
	for s, want := range map[string]Place{
		"authorization":       Authorization,
		"query:access_token":  {InQuery, "access_token"},
		"cookie:at":           {InCookie, "at"},
		"cookie:__Host-at":    {InCookie, "__Host-at"},
		"header:x-api-token":  {InHeader, "x-api-token"},
		"QUERY:access_token":  {InQuery, "access_token"},
		"query:t.k~n-1":       {InQuery, "t.k~n-1"},
		"header:x-amz-secret": {InHeader, "x-amz-secret"},
	} {
		p, err := ParsePlace(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, p, s)
	}
	for _, s := range []string{"", "authorization:x", "bearer", "query:", "query:access%5Ftoken", "query:a b", "query:a&b",
		"cookie:", "cookie:a;b", "cookie:a=b", "header:", "header:X-Api-Token", "header:x_api", "header:authorization",
		"header:cookie", "header:dpop", "header:host", "header:x-authz-subject", "header:x-forwarded-uri", "header:x-original-uri",
		"header:x-envoy-original-path", "path:x"} {
		_, err := ParsePlace(s)
		assert.Error(t, err, s)
	}
}

func TestFind(t *testing.T) {
	all := []Place{Authorization, {InQuery, "access_token"}, {InCookie, "at"}, {InHeader, "x-api-token"}}
	tests := []struct {
		name    string
		places  []Place
		authz   []string
		target  string
		header  http.Header
		want    Found
		wantErr error // nil: no error; ErrMalformed stands for "some other error"
	}{
		{name: "authorization", authz: []string{"Bearer a.b.c"}, want: Found{Authorization, SchemeBearer, "a.b.c"}},
		{name: "dpop scheme", authz: []string{"DPoP a.b.c"}, want: Found{Authorization, SchemeDPoP, "a.b.c"}},
		{name: "query", target: "/ws?room=1&access_token=a.b.c", want: Found{all[1], SchemeBearer, "a.b.c"}},
		{name: "query, form-encoded value", target: "/ws?access_token=a%2Eb.c", want: Found{all[1], SchemeBearer, "a.b.c"}},
		{name: "cookie", header: http.Header{"Cookie": {"theme=dark; at=a.b.c"}}, want: Found{all[2], SchemeBearer, "a.b.c"}},
		{name: "cookie, quoted", header: http.Header{"Cookie": {`at="a.b.c"`}}, want: Found{all[2], SchemeBearer, "a.b.c"}},
		{name: "cookie headers joined by a proxy", header: http.Header{"Cookie": {"theme=dark,at=a.b.c"}}, want: Found{all[2], SchemeBearer, "a.b.c"}},
		{name: "header", header: http.Header{"X-Api-Token": {" a.b.c "}}, want: Found{all[3], SchemeBearer, "a.b.c"}},
		{name: "none", target: "/ws?room=1", header: http.Header{"Cookie": {"theme=dark"}}, wantErr: ErrNoCredentials},
		{name: "basic is no token", authz: []string{"Basic dXNlcjpwYXNz"}, wantErr: ErrNoCredentials},
		{name: "a place not read", places: []Place{Authorization}, target: "/ws?access_token=a.b.c", wantErr: ErrNoCredentials},
		{name: "another cookie name", header: http.Header{"Cookie": {"xat=a.b.c; at_=x"}}, wantErr: ErrNoCredentials},
		{name: "authorization and query", authz: []string{"Bearer a.b.c"}, target: "/ws?access_token=d.e.f", wantErr: ErrMultipleTokens},
		{name: "query and cookie", target: "/ws?access_token=a.b.c", header: http.Header{"Cookie": {"at=a.b.c"}}, wantErr: ErrMultipleTokens},
		{name: "cookie and header", header: http.Header{"Cookie": {"at=a.b.c"}, "X-Api-Token": {"a.b.c"}}, wantErr: ErrMultipleTokens},
		{name: "parameter twice", target: "/ws?access_token=a.b.c&access_token=a.b.c", wantErr: ErrMultipleTokens},
		{name: "cookie twice", header: http.Header{"Cookie": {"at=a; at=b"}}, wantErr: ErrMultipleTokens},
		{name: "header twice", header: http.Header{"X-Api-Token": {"a", "b"}}, wantErr: ErrMultipleTokens},
		{name: "header joined by envoy", header: http.Header{"X-Api-Token": {"a,b"}}, wantErr: ErrMultipleTokens},
		{name: "two authorization headers", authz: []string{"Bearer a", "Bearer b"}, wantErr: ErrMultipleCredentials},
		{name: "encoded parameter name", target: "/ws?access%5Ftoken=a.b.c", wantErr: ErrEncodedTokenParameter},
		{name: "encoded name next to the plain one", target: "/ws?access_token=a&access%5ftoken=b", wantErr: ErrEncodedTokenParameter},
		// Names other upstreams read as the token's: the upstream would get a token never judged.
		{name: "after a semicolon", target: "/ws?access_token=a.b.c&x=1;access_token=evil", wantErr: ErrEncodedTokenParameter},
		{name: "after a semicolon alone", target: "/ws?x=1;access_token=a.b.c", wantErr: ErrEncodedTokenParameter},
		{name: "semicolon in the pair", target: "/ws?access_token=a.b.c;access_token=evil", wantErr: ErrEncodedTokenParameter},
		{name: "another case (ASP.NET)", target: "/ws?access_token=a.b.c&Access_Token=evil", wantErr: ErrEncodedTokenParameter},
		{name: "long s folds to s", target: "/ws?acce\u017fs_token=evil", wantErr: ErrEncodedTokenParameter},
		{name: "dot (PHP)", target: "/ws?access.token=evil", wantErr: ErrEncodedTokenParameter},
		{name: "plus (PHP)", target: "/ws?access+token=evil", wantErr: ErrEncodedTokenParameter},
		{name: "space (PHP)", target: "/ws?access%20token=evil", wantErr: ErrEncodedTokenParameter},
		{name: "array (PHP)", target: "/ws?access_token[]=evil", wantErr: ErrEncodedTokenParameter},
		{name: "array with a key (PHP)", target: "/ws?access_token[x]=evil", wantErr: ErrEncodedTokenParameter},
		{name: "open bracket (PHP)", target: "/ws?access[token=evil", wantErr: ErrEncodedTokenParameter},
		{name: "leading space and NUL (PHP)", target: "/ws?%20access_token%00x=evil", wantErr: ErrEncodedTokenParameter},
		{name: "%u escape (ASP.NET)", target: "/ws?access%u005Ftoken=evil", wantErr: ErrEncodedTokenParameter},
		{name: "encoded twice", target: "/ws?access%255Ftoken=evil", wantErr: ErrEncodedTokenParameter},
		{name: "names that are others", target: "/ws?access_tokens=1&xaccess_token=2&access=3&token=4&access_token_=5&room=a;b&access_token=a.b.c",
			want: Found{Place: Place{InQuery, "access_token"}, Scheme: SchemeBearer, Token: "a.b.c"}},
		{name: "empty parameter", target: "/ws?access_token=", wantErr: ErrMalformed},
		{name: "bad escape", target: "/ws?access_token=a%zz", wantErr: ErrMalformed},
		{name: "space in a header token", header: http.Header{"X-Api-Token": {"Bearer a.b.c"}}, wantErr: ErrMalformed},
		{name: "too large", target: "/ws?access_token=" + strings.Repeat("a", MaxTokenBytes+1), wantErr: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			places := tt.places
			if places == nil {
				places = all
			}
			target := tt.target
			if target == "" {
				target = "/ws"
			}
			got, err := Find(places, tt.authz, target, headers(tt.header))
			switch tt.wantErr {
			case nil:
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
			case ErrMalformed:
				require.Error(t, err)
				for _, e := range []error{ErrNoCredentials, ErrMultipleTokens, ErrMultipleCredentials} {
					assert.NotErrorIs(t, err, e)
				}
				assert.NotContains(t, err.Error(), "a.b.c", "an error never names the token")
			default:
				assert.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

func TestWithout(t *testing.T) {
	for in, want := range map[string]string{
		"/ws?access_token=t":                       "/ws",
		"/ws?room=1&access_token=t&z=%2F":          "/ws?room=1&z=%2F",
		"/ws?access_token=t&access_token=u&b":      "/ws?b",
		"/ws":                                      "/ws",
		"/ws?access_tokens=t&xaccess_token=u":      "/ws?access_tokens=t&xaccess_token=u",
		"/ws?room=1&access_token":                  "/ws?room=1",
		"/a/b;c?z=2&y=1&access_token=t&y=0#no-way": "/a/b;c?z=2&y=1&y=0#no-way",
	} {
		assert.Equal(t, want, WithoutQueryParameter(in, "access_token"), in)
	}
	for _, tt := range []struct {
		in      []string
		names   []string
		want    string
		removed bool
	}{
		{[]string{"theme=dark; at=t", "lang=nl"}, []string{"at"}, "theme=dark; lang=nl", true},
		{[]string{"at=t"}, []string{"at"}, "", true},
		{[]string{"xat=1;at=t, at_=2"}, []string{"at"}, "xat=1; at_=2", true},
		{[]string{"theme=dark; lang=nl"}, []string{"at"}, "theme=dark; lang=nl", false},
		// A "," inside a cookie's value stays; a pair after it that reads as the token's goes.
		{[]string{"prefs=a,b; at=t"}, []string{"at"}, "prefs=a,b", true},
		{[]string{"prefs=a,at=evil; x=1"}, []string{"at"}, "prefs=a; x=1", true},
		// Names an upstream reads as the token's: another case, percent-encoded (PHP), "." (PHP).
		{[]string{"AT=evil; a%74=evil; a.t=x; theme=dark"}, []string{"at"}, "a.t=x; theme=dark", true},
		{[]string{"x.token=evil; x[token=evil; x_token=t; xtoken=1"}, []string{"x_token"}, "xtoken=1", true},
		{[]string{"at=t; sid=1; x-api=2"}, []string{"at", "sid"}, "x-api=2", true},
	} {
		got, removed := WithoutCookies(tt.in, tt.names)
		assert.Equal(t, tt.want, got, "%q", tt.in)
		assert.Equal(t, tt.removed, removed, "%q", tt.in)
	}
}

// FuzzFind reads tokens from hostile requests — any query string, Cookie and header values —
// under every place: never a panic; a token found is one token68 value within the size limit;
// what the upstream gets instead never holds the token's parameter or cookie.
func FuzzFind(f *testing.F) {
	f.Add("/ws?room=1&access_token=a.b.c", "theme=dark; at=a.b.c", "a.b.c", "Bearer a.b.c")
	f.Add("/ws?access%5Ftoken=x&access_token=y", "at=\"x\",at=y", "a,b", "")
	f.Add("/ws?&&=&access_token", ";;=;at", " ", "DPoP x")
	places := []Place{Authorization, {InQuery, "access_token"}, {InCookie, "at"}, {InHeader, "x-api-token"}}
	f.Fuzz(func(t *testing.T, target, cookie, header, authorization string) {
		h := headers{"Cookie": {cookie}, "X-Api-Token": {header}}
		for i := range places {
			found, err := Find(places[i:i+1], []string{authorization}, target, h)
			if err == nil && (found.Place != places[i] || found.Token == "" || len(found.Token) > MaxTokenBytes || !isToken68(found.Token)) {
				t.Fatalf("%s: found %+v", places[i], found)
			}
		}
		_, _ = Find(places, []string{authorization}, target, h)
		rest := WithoutQueryParameter(target, "access_token")
		if _, q, ok := strings.Cut(rest, "?"); ok {
			_, qerr := Find(places[1:2], nil, target, nil)
			judged := qerr == nil || errors.Is(qerr, ErrNoCredentials)
			for pair := range strings.SplitSeq(q, "&") {
				if k, _, _ := strings.Cut(pair, "="); k == "access_token" {
					t.Fatalf("%q still has the parameter: %q", target, rest)
				}
				for seg := range strings.SplitSeq(pair, ";") {
					// A token found (or none): the upstream gets no name it may read as the token's.
					if k, _, _ := strings.Cut(seg, "="); judged && ReadsAs(k, "access_token") {
						t.Fatalf("%q (%v) leaves a lookalike: %q", target, qerr, rest)
					}
				}
			}
		}
		if !strings.Contains(target, "?") && rest != target {
			t.Fatalf("a target without a query changed: %q → %q", target, rest)
		}
		rest, _ = WithoutCookies([]string{cookie}, []string{"at"})
		for pair := range strings.FieldsFuncSeq(rest, isCookieSeparator) {
			if k, _, _ := strings.Cut(pair, "="); ReadsAs(strings.TrimSpace(k), "at") {
				t.Fatalf("%q still has the cookie: %q", cookie, rest)
			}
		}
	})
}
