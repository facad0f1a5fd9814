package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// samplePolicy has every kind of match and requirement; pathsPolicy a public prefix next to
// protected paths (the shape of path confusion attacks). The decision's tests use them too.
var samplePolicy, pathsPolicy = readTestdata("sample.yaml"), readTestdata("paths.yaml")

func readTestdata(name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		panic(err)
	}
	return string(b)
}

func loadSample(t *testing.T) *Policy {
	t.Helper()
	p, err := Load([]byte(samplePolicy), []string{"default"})
	require.NoError(t, err)
	return p
}

func TestPolicyMatching(t *testing.T) {
	p := loadSample(t)
	tests := []struct {
		method, host, path, policy string
		want                       string
	}{
		{"GET", "api", "/healthz", "", "health"},
		{"GET", "api", "/healthz?x=1", "", "health"},
		{"GET", "api", "/healthzz", "", "default"},
		{"GET", "api", "/anything", "messages", "messages"},
		{"POST", "api", "/api/messages", "", "write"},
		{"put", "api", "/api/messages/7", "", "write"},
		{"GET", "api", "/api/messages", "", "default"},
		{"POST", "api", "/api/messagesX", "", "default"},
		{"GET", "admin.example.com:443", "/admin/users", "", "admin"},
		{"GET", "ADMIN.example.com", "/admin/users", "", "admin"},
		{"GET", "other.example.com", "/admin/users", "", "default"},
		{"GET", "admin.example.com", "/admin/users/1", "", "default"},
		{"GET", "api", "/reports/42", "", "reports"},
		{"GET", "api", "/reports/42/x", "", "default"},
	}
	for _, tt := range tests {
		r := &Request{Method: tt.method, Host: tt.host, Path: tt.path, ContextExtensions: map[string]string{}}
		if tt.policy != "" {
			r.ContextExtensions["policy"] = tt.policy
		}
		assert.Equal(t, tt.want, canonicalRule(t, p, r), "%s %s%s policy=%q", tt.method, tt.host, tt.path, tt.policy)
	}
}

// canonicalRule names the rule the canonical reading of r selects.
func canonicalRule(t *testing.T, p *Policy, r *Request) string {
	t.Helper()
	_, readings, err := p.Explain(r, time.Time{})
	require.NoError(t, err)
	return readings[0].Rule
}

func TestLoadPolicyErrorsHaveLines(t *testing.T) {
	bad := `issuers:
  - name: default
    issuer: https://x.example
rules:
  - name: a
    match: {}
    public: true
  - name: a
    match: { path: /x, path_prefix: /y }
  - name: c
    match: { path_regex: "([" , methods: ["GET!"] }
    public: true
    require: { scopes: [x] }
  - name: d
    match: { path: nope, path_glob: "[" }
    require:
      issuers: [ghost]
      scopes: ['a"b']
      claims:
        - { claim: groups }
        - { equals: 1 }
        - { claim: x, equals: 1, contains: 2 }
`
	_, err := Load([]byte(bad), []string{"default"})
	require.Error(t, err)
	for _, want := range []string{
		`line 2: issuer "default": the name is already used`,
		`line 2: issuer "default": at least one audience is required`,
		`line 5: rule "a" matches every request`,
		`line 8: rule "a": the name is used twice`,
		`line 8: rule "a": path, path_prefix, path_glob and path_regex contradict`,
		`line 10: rule "c": path_regex`,
		`line 10: rule "c": method "GET!"`,
		`line 10: rule "c": public: true contradicts require`,
		`line 14: rule "d": path "nope" must start with /`,
		`line 14: rule "d": path_glob "["`,
		`line 14: rule "d": issuer "ghost" is not configured`,
		`line 14: rule "d": scope "a\"b"`,
		`line 14: rule "d": claim "groups": give exactly one`,
		`line 14: rule "d": a claim requirement needs claim:`,
		`line 14: rule "d": claim "x": give exactly one`,
	} {
		assert.ErrorContains(t, err, want)
	}

	_, err = Load([]byte("rules:\n  - name: a\n    mtach: {}\n"), nil)
	assert.ErrorContains(t, err, `line 3, column 5: rules[0] has no key "mtach"; did you mean "match"?`, "unknown keys are errors, with their line")
	_, err = Load([]byte("default:\n  match: {path: /x}\n"), nil)
	assert.ErrorContains(t, err, "default: has no match")
}

func TestLoadPolicyEmptyIsDefault(t *testing.T) {
	p, err := Load([]byte("# nothing\n"), nil)
	require.NoError(t, err)
	assert.Empty(t, p.Rules)
	assert.Equal(t, "default", canonicalRule(t, p, &Request{Path: "/"}))
	assert.False(t, p.Default.Public)
}

// FuzzLoadPolicy: any file loads or fails with an error, never a panic; a loaded policy matches
// any request without panicking.
func FuzzLoadPolicy(f *testing.F) {
	f.Add([]byte(samplePolicy))
	f.Add([]byte("rules:\n  - match: {path_regex: '(a+)+'}\n"))
	f.Add([]byte("rules: &a [*a]\n"))
	f.Add([]byte("default: {public: true}\n"))
	f.Add([]byte("credentials: [authorization, \"cookie:at\"]\nrules:\n  - match: {path: /a, cel: 'request.method == \"GET\"'}\n" +
		"    credentials: [\"query:t\"]\n    require:\n      cel: [claims.a == 1, 'request.headers[\"x\"] == \"y\"']\n      acr: [a]\n      max_age: 10m\n"))
	f.Add([]byte("rules:\n  - match: {path: /a}\n    require:\n      cel: |\n        request.host ==\n          1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Load(data, []string{"default"})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy:") {
				t.Fatalf("error without the policy prefix: %v", err)
			}
			return
		}
		for _, path := range []string{"/", "/healthz", "/admin/x", "/" + string(data[:min(len(data), 20)])} {
			_, _, _ = p.Explain(&Request{Method: "GET", Host: "h", Path: path}, time.Time{})
		}
	})
}

// TestPolicyShapeErrorsAllAtOnce: every misspelt key and every value of the wrong kind is
// reported with its line and column, with a suggestion for near misses, in one report with the
// semantic errors of the same file.
func TestPolicyShapeErrorsAllAtOnce(t *testing.T) {
	src := `rules:
  - name: a
    match: { path-prefix: /a }
    requires:
      scopes: [x]
  - name: b
    match: { path_glob: "/b/[" }
    require:
      scopes: read
    public: yes please
    colour: blue
dry_run: maybe
`
	_, err := Load([]byte(src), []string{"default"})
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		`line 3, column 14: rules[0].match has no key "path-prefix"; did you mean "path_prefix"?`,
		`line 4, column 5: rules[0] has no key "requires"; did you mean "require"?`,
		`line 9, column 15: rules[1].require.scopes must be a list, not "read"`,
		`line 10, column 13: rules[1].public must be true or false, not "yes please"`,
		`line 11, column 5: rules[1] has no key "colour" (it has credentials, dry_run, identity, match, name, public, require)`,
		`line 12, column 10: dry_run must be true or false, not "maybe"`,
		`rule "b": path_glob`, // the semantic check of the same file: a bad glob
	} {
		assert.Contains(t, msg, want)
	}
	assert.NotContains(t, msg, "authz.", "no Go type names")
	assert.Less(t, strings.Index(msg, "line 3,"), strings.Index(msg, "line 12,"), "in the order of the file")
}

func TestSuggest(t *testing.T) {
	known := yamlFields(reflect.TypeFor[requireSpec]())
	for key, want := range map[string]string{
		"scope": "scopes", "Scopes": "scopes", "any-scopes": "any_scopes", "issuer": "issuers",
		"sender_constraint": "sender_constrained", "audience": "audiences", "zzz": "", "claims_header": "",
	} {
		assert.Equal(t, want, suggest(key, known), key)
	}
}

// TestPolicyAliasBomb: YAML aliases of aliases (a billion laughs) are checked once each and
// refused, not expanded.
func TestPolicyAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n  - name: r\n    match: {path: /x}\n    require: {scopes: &a0 [x, x, x, x, x, x, x, x, x, x]}\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "  - name: r%d\n    match: {path: /x%d}\n    require: {scopes: &a%d [%s]}\n", i, i, i,
			strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	_, err := Load([]byte(b.String()), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must be a single value", "a list of lists where scopes are names")
}

// TestPolicyAliasOfAnotherShape: an alias used where another shape belongs is reported there,
// in the file's terms, even when the same anchor fits where it was defined.
func TestPolicyAliasOfAnotherShape(t *testing.T) {
	_, err := Load([]byte(`rules:
  - name: a
    match: {path: /a}
    require: {scopes: &s [x]}
  - name: b
    match: {path: /b}
    require: {scopes: *s}
  - name: c
    match: *s
`), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 9, column 12: rules[2].match must be a mapping (key: value), not a list")
	assert.NotContains(t, err.Error(), "authz.", "no Go type names")
}

func TestExplainShowsTheNewReadings(t *testing.T) {
	p, err := Load([]byte(pathsPolicy), []string{"default"})
	require.NoError(t, err)
	canonical, readings, err := p.Explain(&Request{Method: "GET", Path: "/adm\u0130n.json"}, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, "/adm%C4%B0n.json", canonical)
	var got []string
	for _, rd := range readings {
		got = append(got, fmt.Sprintf("%s fold=%t slash=%t suffix=%t → %s", rd.Path, rd.Fold, rd.NoTrailingSlash, rd.NoSuffix, rd.Rule))
	}
	// pathsPolicy has a pattern with a trailing slash (/admin/), so every path is also read
	// without one; the suffix readings that select the default rule are left out.
	assert.Equal(t, []string{
		"/adm%C4%B0n.json fold=false slash=false suffix=false → default",
		"/admin.json fold=true slash=false suffix=false → default",
		"/adm%C4%B0n.json fold=false slash=true suffix=false → default",
		"/admin.json fold=true slash=true suffix=false → default",
		"/admin fold=true slash=true suffix=true → admin",
	}, got)

	_, readings, err = p.Explain(&Request{Method: "GET", Path: "/favicon.ico"}, time.Time{})
	require.NoError(t, err)
	for _, rd := range readings {
		assert.False(t, rd.NoSuffix, "/favicon is judged by the default rule only: not a reading that counts (%+v)", rd)
	}
}

func TestPolicyPathsMustBeCanonical(t *testing.T) {
	_, err := Load([]byte("rules:\n  - match: {path: /api/%6Dessages}\n"), nil)
	assert.ErrorContains(t, err, `path "/api/%6Dessages" is not in canonical form: write "/api/messages"`)
	_, err = Load([]byte("rules:\n  - match: {path_prefix: /a/../b}\n"), nil)
	assert.ErrorContains(t, err, `write "/b"`)
	_, err = Load([]byte("rules:\n  - match: {path: /a%2Fb}\n"), nil)
	assert.ErrorContains(t, err, "encoded slash")
}

// FuzzQueryMethods: whatever the query, the methods read from it are method tokens, and a
// plain _method=X pair is always read.
func FuzzQueryMethods(f *testing.F) {
	for _, s := range []string{"/a?_method=DELETE", "/a?%5Fmethod=put&x", "/a?.method=%50UT", "/a?x=%zz&_method=get", "/a?_method"} {
		f.Add(s, "PATCH")
	}
	f.Fuzz(func(t *testing.T, target, method string) {
		for _, m := range queryMethods(target) {
			if !methodToken.MatchString(m) {
				t.Fatalf("queryMethods(%q) gave %q, not a method token", target, m)
			}
		}
		m := strings.ToUpper(method)
		if !methodToken.MatchString(m) || strings.ContainsAny(target, "?#") {
			return
		}
		got := queryMethods(target + "?a=1&_method=" + method)
		if !slices.Contains(got, m) {
			t.Fatalf("queryMethods(%q) = %q, missing %s", target+"?a=1&_method="+method, got, m)
		}
	})
}

func TestIdentityConfigErrors(t *testing.T) {
	for src, want := range map[string]string{
		"identity: {claims: [{header: Authorization, claim: sub}]}":                           "lower-case",
		"identity: {claims: [{header: authorization, claim: sub}]}":                           "reserved",
		"identity: {claims: [{header: x-authz-subject, claim: sub}]}":                         "reserved",
		"identity: {claims: [{header: connection, claim: sub}]}":                              "reserved",
		"identity: {claims: [{header: x-envoy-foo, claim: sub}]}":                             "namespace",
		"identity: {claims: [{header: 'x-a b', claim: sub}]}":                                 "lower-case",
		"identity: {claims: [{header: x-a, claim: a}, {header: x-a, claim: b}]}":              "two claims",
		"identity: {claims: [{header: x-a}]}":                                                 "needs header: and claim:",
		"identity: {metadata: [cid]}":                                                         "set already",
		"rules:\n  - match: {path: /x}\n    identity: {claims: [{header: host, claim: a}]}\n": "line 2",
	} {
		_, err := Load([]byte(src), nil)
		assert.ErrorContains(t, err, want, src)
	}
	_, err := ParseClaimHeaders("x-user-email=email, x-user-country=address.country")
	assert.NoError(t, err)
	_, err = ParseClaimHeaders("x-user-email, cookie=sub")
	assert.ErrorContains(t, err, "not header=claim")
	assert.ErrorContains(t, err, "reserved")
}
