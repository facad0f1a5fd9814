package expr

import (
	"strings"
	"testing"
)

// FuzzVars builds the variables from hostile request values — header names in any case, with
// colons, empty, repeated, huge; paths, hosts and methods of any bytes; any JSON as claims — and
// evaluates expressions over them: an evaluation is a bool or an error, never a panic; the
// hidden and pseudo-headers never show; names are lower-case; a value beyond the bounds is an
// error, never a truncated value.
func FuzzVars(f *testing.F) {
	f.Add("Authorization", "Bearer x", "X-Tenant", "acme", ":path", "/a?access_token=t", "GET", "/a", "h", []byte(`{"tenant":"acme","groups":["team-a"]}`))
	f.Add("cookie", "at=t", "COOKIE", "at=u", "x-tenant", "a,b", "POST", "/", "", []byte(`{"n":1e400}`))
	f.Add("x", strings.Repeat("v", MaxSize+1), "dpop", "p", "", "", "", "", "", []byte(`[]`))
	progs := map[string]*Program{}
	for _, src := range []string{
		`request.headers.all(k, k == k.lowerAscii() && !k.startsWith(":") && !(k in ["authorization", "cookie", "dpop", "x-secret"]))`,
		`request.headers[?"x-tenant"].orValue("") == claims.tenant`,
		`claims.groups.exists(g, string(g).startsWith("team-"))`,
		`request.path.startsWith("/") && request.method.size() > 0 && request.host.endsWith("h")`,
		`size(request.headers) >= 0 && claims.size() >= 0 && scopes.all(s, s != "")`,
	} {
		p, probs := Compile(src, Require)
		if len(probs) > 0 {
			f.Fatal(src, probs)
		}
		progs[src] = p
	}
	hidden := func(n string) bool { return n == "authorization" || n == "cookie" || n == "dpop" || n == "x-secret" }
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3, method, path, host string, claims []byte) {
		v := &Vars{Method: method, Path: path, Host: host, Hidden: hidden,
			Headers: headerList{{k1, v1}, {k2, v2}, {k3, v3}, {"X-Secret", v1}},
			Claims:  NewClaims(claims), Scopes: strings.Fields(v2)}
		oversized := false
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}} {
			n := strings.ToLower(kv[0])
			oversized = oversized || !strings.HasPrefix(n, ":") && !hidden(n) && len(kv[1]) > MaxSize/3
		}
		for src, p := range progs {
			ok, err := p.Eval(v)
			if err == nil && !ok && strings.HasPrefix(src, "request.headers.all") {
				t.Fatalf("a hidden, pseudo or upper-case header shows in request.headers: %q", v.headerMap())
			}
			if err != nil && ok {
				t.Fatalf("%s: true with an error %v", src, err)
			}
		}
		m := v.headerMap()
		for k := range m {
			if k != strings.ToLower(k) || strings.HasPrefix(k, ":") || hidden(k) {
				t.Fatalf("request.headers has %q", k)
			}
		}
		if !oversized {
			return
		}
		// A value that may be over the bound: request.headers is an error or holds it whole.
		if _, err := progs[`request.headers[?"x-tenant"].orValue("") == claims.tenant`].Eval(&Vars{Headers: v.Headers, Hidden: hidden, Claims: v.Claims}); err == nil {
			for _, val := range m {
				if len(val) > MaxSize {
					t.Fatalf("a value of %d bytes was read", len(val))
				}
			}
		}
	})
}
