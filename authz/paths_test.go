package authz

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"

	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPathSpellingsAreJudgedAsTheUpstreamReadsThem(t *testing.T) {
	e := newEnv(t, nil)
	p, err := policy.Load([]byte(pathsPolicy), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(p)
	writer := e.mint(t, map[string]any{"scp": []string{"messages:write"}})
	reader := e.mint(t, nil) // messages:read

	tests := []struct {
		method, path string
		token        string
		want         Outcome
	}{
		{"GET", "/public/x", "", Allow},
		{"GET", "/api/messages", writer, InsufficientScope},
		{"GET", "/api/messages", reader, Allow},
		// decoded, dot segments, merged slashes: the canonical path is /api/messages
		{"GET", "/api/%6Dessages", writer, InsufficientScope},
		{"GET", "/api/%6dessages", writer, InsufficientScope},
		{"GET", "/%61pi/messages", writer, InsufficientScope},
		{"GET", "/api//messages", writer, InsufficientScope},
		{"GET", "//api.example/api/messages", writer, InvalidRequest}, // a URI parser reads a host
		{"GET", "/api/./messages", writer, InsufficientScope},
		{"GET", "/x/../api/messages", writer, InsufficientScope},
		{"GET", "/public/../api/messages", "", NoCredentials},
		{"GET", "/public/%2e%2e/api/messages", "", NoCredentials},
		{"GET", "/public/.%2E/admin/x", writer, InsufficientScope},
		// readings: case, trailing slash, ;parameters — every rule that could serve it must allow
		{"GET", "/API/Messages", writer, InsufficientScope},
		{"GET", "/api/messages/", writer, InsufficientScope},
		{"GET", "/API/MESSAGES/", writer, InsufficientScope},
		{"GET", "/api/messages;x=1", writer, InsufficientScope},
		{"GET", "/public/..;/api/messages", "", NoCredentials},
		{"GET", "/PUBLIC/x", "", NoCredentials}, // the canonical reading is the default rule
		{"GET", "/admin", writer, InsufficientScope},
		{"GET", "/Admin/x", writer, InsufficientScope},
		// letters a case-insensitive router takes for ASCII ones: İ (U+0130) and ı (U+0131) for
		// i, the Kelvin sign (U+212A) for k, ſ (U+017F) for s; encoded and raw
		{"GET", "/adm%C4%B0n", writer, InsufficientScope},
		{"GET", "/adm\u0130n", writer, InsufficientScope},
		{"GET", "/adm%C4%B1n", writer, InsufficientScope},
		{"GET", "/adm%c4%b1n/x", writer, InsufficientScope},
		{"GET", "/ADM\u0131N/", writer, InsufficientScope},
		{"GET", "/api/%E2%84%AAeys", reader, InsufficientScope},
		{"GET", "/api/\u212Aeys", reader, InsufficientScope},
		{"GET", "/api/key%C5%BF", reader, InsufficientScope},
		{"GET", "/api/key\u017f", reader, InsufficientScope},
		{"GET", "/api/m%C4%B0ssages", writer, Allow}, // İ is i, not e: the default rule
		{"GET", "/caf%C3%A9", writer, Allow},
		// format suffixes: a rule protects its path's suffixed spellings
		{"GET", "/admin.json", writer, InsufficientScope},
		{"GET", "/api/keys.json", reader, InsufficientScope},
		{"GET", "/api/messages.json", writer, InsufficientScope},
		{"GET", "/api/messages.json", reader, Allow},
		{"GET", "/api/messages.", writer, InsufficientScope},
		{"GET", "/api/messages%2Ejson", writer, InsufficientScope},
		{"GET", "/api/messages.tar.gz", writer, InsufficientScope},
		{"GET", "/ADMIN.JSON", writer, InsufficientScope},
		{"GET", "/admin.json/", writer, InsufficientScope},
		{"GET", "/api/keys.json;x=1", reader, InsufficientScope},
		{"GET", "/adm%C4%B0n.json", writer, InsufficientScope},
		{"GET", "/public/x.json", "", Allow},
		// ... but not a public file's: its stem selects only the default rule
		{"GET", "/favicon.ico", "", Allow},
		{"GET", "/FAVICON.ICO", "", NoCredentials}, // the canonical reading is the default rule
		// HEAD runs the GET handler upstream
		{"HEAD", "/reports", reader, InsufficientScope},
		{"get", "/reports", reader, InsufficientScope},
		// refused: ambiguous between upstreams
		{"GET", "/public/..%2Fapi/messages", "", InvalidRequest},
		{"GET", "/public%2F..%2Fapi%2Fmessages", "", InvalidRequest},
		{"GET", "/public/..%5Capi/messages", "", InvalidRequest},
		{"GET", "/public\\..\\api\\messages", "", InvalidRequest},
		{"GET", "/public#/../api/messages", "", InvalidRequest},
		{"GET", "/../api/messages", "", InvalidRequest},
		{"GET", "/public//../api/messages", "", InvalidRequest},
		{"GET", "/api/mes%2573ages", writer, InvalidRequest},
		{"GET", "/api/messages%00", writer, InvalidRequest},
		{"GET", "/api/messages%ff", writer, InvalidRequest},
		{"GET", "http://api.example/api/messages", writer, InvalidRequest},
		{"GET", "", writer, InvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := &Request{Method: tt.method, Host: "api", Path: tt.path}
			if tt.token != "" {
				r.Authorization = []string{"Bearer " + tt.token}
			}
			d := e.az.Decide(context.Background(), r)
			assert.Equal(t, tt.want.String(), d.Outcome.String(), "rule %s, reason %v, detail %s", d.Rule, d.Reason, d.Detail)
			if tt.want == InvalidRequest {
				assert.Equal(t, 400, d.HTTPStatus())
				assert.Contains(t, headerOf(d.ClientHeaders(Challenges{Realm: "api"}), "www-authenticate"), `error="invalid_request"`)
			}
		})
	}
}

func TestUpstreamPathReadingsCanBeTurnedOff(t *testing.T) {
	e := newEnv(t, nil)
	p, err := policy.Load([]byte(pathsPolicy+"upstream_paths: {case_insensitive: false, trailing_slash: false, path_parameters: false, format_suffix: false}\n"), []string{"default"})
	require.NoError(t, err)
	e.az.SetPolicy(p)
	writer := e.mint(t, map[string]any{"scp": []string{"messages:write"}})
	for _, path := range []string{"/API/Messages", "/api/messages/", "/api/messages;x=1", "/adm%C4%B0n", "/api/messages.json"} {
		d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + writer}})
		assert.Equal(t, Allow, d.Outcome, "%s: a Go upstream serves no protected handler here, the default rule judges it", path)
		assert.Equal(t, "default", d.Rule)
	}
}

func TestEachReadingCanBeTurnedOffAlone(t *testing.T) {
	e := newEnv(t, nil)
	writer := e.mint(t, map[string]any{"scp": []string{"messages:write"}})
	for key, path := range map[string]string{"case_insensitive": "/API/Messages", "trailing_slash": "/api/messages/",
		"path_parameters": "/api/messages;x=1", "format_suffix": "/api/messages.json"} {
		t.Run(key, func(t *testing.T) {
			for _, on := range []bool{true, false} {
				p, err := policy.Load(fmt.Appendf(nil, "%supstream_paths: {%s: %t}\n", pathsPolicy, key, on), []string{"default"})
				require.NoError(t, err)
				e.az.SetPolicy(p)
				d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + writer}})
				want := map[bool]Outcome{true: InsufficientScope, false: Allow}[on]
				assert.Equal(t, want.String(), d.Outcome.String(), "%s: %t, %s: rule %s", key, on, path, d.Rule)
			}
		})
	}
	_, err := policy.Load([]byte("upstream_paths: {format_suffix: maybe}\n"), nil)
	assert.ErrorContains(t, err, "format_suffix")
	_, err = policy.Load([]byte("upstream_paths: {format_suffixes: false}\n"), nil)
	assert.ErrorContains(t, err, `upstream_paths has no key "format_suffixes"; did you mean "format_suffix"?`)
}

// TestFormatSuffixResidualCase: a suffix reading counts whenever it selects a rule other than
// the default, so a public file whose stem a catch-all rule covers needs what that rule needs
// (documented in docs/paths.md; a public rule for the stem, or format_suffix: false, lifts it).
func TestFormatSuffixResidualCase(t *testing.T) {
	e := newEnv(t, nil)
	const src = "rules:\n  - {name: favicon, match: {path: /favicon.ico}, public: true}\n" +
		"  - {name: pages, match: {path_glob: /*}, require: {scopes: [pages]}}\n"
	for suffix, want := range map[string]Outcome{"": NoCredentials, "upstream_paths: {format_suffix: false}\n": Allow} {
		p, err := policy.Load([]byte(src+suffix), nil)
		require.NoError(t, err)
		e.az.SetPolicy(p)
		d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: "/favicon.ico"})
		assert.Equal(t, want.String(), d.Outcome.String(), "%q: rule %s", suffix, d.Rule)
	}
}

// TestNonASCIIPatternsAreFoldedAlike: a rule whose path holds encoded non-ASCII letters matches
// their other cases, whichever case the rule was written in.
func TestNonASCIIPatternsAreFoldedAlike(t *testing.T) {
	e := newEnv(t, nil)
	p, err := policy.Load([]byte(`
rules:
  - {name: cafe, match: {path: /caf%C3%A9}, require: {scopes: [cafe]}}
  - {name: ete, match: {path_prefix: /%C3%89T%C3%89}, require: {scopes: [ete]}}
  - {name: glob, match: {path_glob: "/%C3%9C*/x"}, require: {scopes: [glob]}}
  - {name: re, match: {path_regex: "/k[a-z]+"}, require: {scopes: [re]}}
`), nil)
	require.NoError(t, err)
	e.az.SetPolicy(p)
	tok := e.mint(t, nil)
	for path, rule := range map[string]string{
		"/caf%C3%A9": "cafe", "/CAF%C3%89": "cafe", "/Caf%C3%A9.json": "cafe",
		"/%C3%A9t%C3%A9/x": "ete", "/%C3%89t%C3%A9": "ete", "/%C3%A9T%C3%A9": "ete",
		"/%C3%BCber/x": "glob", "/%C3%9CBER/X": "glob",
		"/%E2%84%AAeys": "re", // the Kelvin sign folds to k before the regex sees it
	} {
		d := e.az.Decide(context.Background(), &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + tok}})
		assert.Equal(t, rule, d.Rule, path)
		assert.Equal(t, InsufficientScope.String(), d.Outcome.String(), path)
	}
}

// FuzzDecisionOfCanonicalPath: for any request target, the decision equals the decision for
// its canonical path, or the target is refused; and a target that an upstream routing as Spring
// with case-insensitive and suffix pattern matching does (modelled by springRoutes) sends to a
// protected path is allowed only with what that path's rule requires. Tokens and policy are
// fixed; the path varies.
func FuzzDecisionOfCanonicalPath(f *testing.F) {
	e := newEnv(f, nil)
	p, err := policy.Load([]byte(pathsPolicy), []string{"default"})
	require.NoError(f, err)
	e.az.SetPolicy(p)
	scopes := [][]string{nil, {"messages:read"}, {"messages:write"}, {"admin", "reports:read"}, {"keys:read"}}
	tokens := make([]string, len(scopes))
	for i, s := range scopes[1:] {
		tokens[i+1] = e.mint(f, map[string]any{"scp": s})
	}
	for _, s := range []string{"/public/x", "/api/messages", "/api/%6Dessages", "/public/../admin/x", "/API/messages/",
		"/public/..;/admin/", "/reports", "/a%2Fb", "//admin//x", "/public/%2e%2e/api/messages",
		"/adm%C4%B0n", "/ADM\u0131N.json", "/api/%E2%84%AAeys", "/api/key%C5%BF", "/admin.json", "/api/keys.tar.gz/",
		"/favicon.ico", "/api/messages."} {
		for i := range tokens {
			f.Add(s, uint8(i), false)
			f.Add(s, uint8(i), true)
		}
	}
	f.Fuzz(func(t *testing.T, target string, tok uint8, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		r := &Request{Method: method, Host: "api", Path: target}
		if token := tokens[int(tok)%len(tokens)]; token != "" {
			r.Authorization = []string{"Bearer " + token}
		}
		d := e.az.Decide(context.Background(), r)
		if d.Outcome == InvalidRequest {
			return
		}
		canon := *r
		canon.Path = d.Path
		dc := e.az.Decide(context.Background(), &canon)
		if dc.Outcome != d.Outcome || dc.Rule != d.Rule || dc.Path != d.Path {
			t.Fatalf("%s %q: %s by %s; its canonical path %q: %s by %s", method, target, d.Outcome, d.Rule, d.Path, dc.Outcome, dc.Rule)
		}
		if route, need := springRoute(d.Path); route != "" && d.Outcome == Allow && !slices.Contains(scopes[int(tok)%len(scopes)], need) {
			t.Fatalf("%s %q (canonical %q) is allowed by %s with scopes %q, but Spring serves it with %s, which needs %s",
				method, target, d.Path, d.Rule, scopes[int(tok)%len(scopes)], route, need)
		}
	})
}

// springRoutes are pathsPolicy's protected exact paths and the scope each needs.
var springRoutes = map[string]string{"/api/messages": "messages:read", "/api/keys": "keys:read", "/admin": "admin"}

// springRoute models a Spring MVC 5 upstream with case-insensitive matching, suffix pattern
// matching and trailing slash matching, written apart from reqpath: it decodes the canonical
// path, drops ";" parameters, and matches each route as AntPathMatcher does — literal segments
// compared as Java's String.equalsIgnoreCase compares them, "/x" also as "/x.*" and "/x/".
func springRoute(canonical string) (route, scope string) {
	var segs []string
	for seg := range strings.SplitSeq(canonical[1:], "/") {
		seg, _, _ = strings.Cut(seg, ";")
		d, err := url.PathUnescape(seg)
		if err != nil {
			return "", ""
		}
		segs = append(segs, d)
	}
	if len(segs) > 1 && segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1] // trailing slash matching
	}
	for route, scope := range springRoutes {
		want := strings.Split(route[1:], "/")
		if len(want) != len(segs) {
			continue
		}
		match := true
		for i, w := range want {
			got := segs[i]
			if i == len(want)-1 && !javaEqualsIgnoreCase(w, got) {
				// suffix pattern: the last segment is the route's followed by "." and anything
				stem, _, found := strings.Cut(got, ".")
				got = stem
				if !found {
					match = false
					break
				}
			}
			if !javaEqualsIgnoreCase(w, got) {
				match = false
				break
			}
		}
		if match {
			return route, scope
		}
	}
	return "", ""
}

// javaEqualsIgnoreCase is String.equalsIgnoreCase on the UTF-16 of a and b: same length, and each
// pair of chars equal, or equal in upper case, or equal in the lower case of their upper case.
func javaEqualsIgnoreCase(a, b string) bool {
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	if len(ua) != len(ub) {
		return false
	}
	for i := range ua {
		c1, c2 := rune(ua[i]), rune(ub[i])
		if c1 == c2 {
			continue
		}
		u1, u2 := unicode.ToUpper(c1), unicode.ToUpper(c2)
		if u1 != u2 && unicode.ToLower(u1) != unicode.ToLower(u2) {
			return false
		}
	}
	return true
}

// BenchmarkDecidePathReadings is the decision for a cached token under a policy with path rules
// (pathsPolicy): an ordinary path, which no reading changes, and one that every reading does.
func BenchmarkDecidePathReadings(b *testing.B) {
	e := newEnv(b, nil)
	p, err := policy.Load([]byte(pathsPolicy), []string{"default"})
	if err != nil {
		b.Fatal(err)
	}
	e.az.SetPolicy(p)
	tok := e.mint(b, nil)
	for _, path := range []string{"/api/messages", "/API/Messages;x/"} {
		b.Run(path, func(b *testing.B) {
			r := &Request{Method: "GET", Path: path, Authorization: []string{"Bearer " + tok}}
			e.az.Decide(context.Background(), r)
			b.ReportAllocs()
			for b.Loop() {
				if d := e.az.Decide(context.Background(), r); d.Outcome != Allow {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}
