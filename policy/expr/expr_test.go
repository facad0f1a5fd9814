package expr

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type headerList [][2]string

func (h headerList) Each(fn func(name, value string)) {
	for _, kv := range h {
		fn(kv[0], kv[1])
	}
}

var t0 = time.Date(2026, 12, 2, 14, 30, 0, 0, time.UTC) // a Wednesday

func vars() *Vars {
	return &Vars{
		Method: "GET", Path: "/tenants/acme/reports", Host: "acme.api.example",
		Headers: headerList{{"X-Tenant", "acme"}, {"x-env", "prod"}, {"X-Env", "eu"}, {"authorization", "Bearer secret"},
			{":path", "/tenants/acme/reports?access_token=secret"}, {"cookie", "at=secret"}},
		Hidden:            func(n string) bool { return n == "authorization" || n == "cookie" },
		ContextExtensions: map[string]string{"policy": "reports"},
		Now:               t0,
		Claims: NewClaims([]byte(`{"sub":"u1","tenant":"acme","groups":["team-a","users"],"auth_time":1796221800,` +
			`"n":1.5,"big":123456789012345678901,"email_verified":true,"address":{"country":"NL"}}`)),
		Scopes: []string{"reports:read"}, Issuer: "default", ClientID: "c1", Subject: "u1",
	}
}

func TestEval(t *testing.T) {
	tests := []struct {
		src     string
		want    bool
		wantErr string
	}{
		{src: `claims.groups.exists(g, g.startsWith("team-"))`, want: true},
		{src: `request.host.split(".")[0] == claims.tenant`, want: true},
		{src: `request.headers["x-tenant"] == claims.tenant`, want: true},
		{src: `request.headers["x-env"] == "prod,eu"`, want: true},
		{src: `!("authorization" in request.headers) && !("cookie" in request.headers) && !(":path" in request.headers)`, want: true},
		{src: `now.getDayOfWeek("Europe/Amsterdam") in [1, 2, 3, 4, 5] && now.getHours("Europe/Amsterdam") >= 8 && now.getHours("Europe/Amsterdam") < 18`, want: true},
		{src: `"reports:read" in scopes && token.issuer == "default" && token.client_id == "c1" && token.subject == "u1"`, want: true},
		{src: `request.method == "GET" && request.path.startsWith("/tenants/" + claims.tenant + "/")`, want: true},
		{src: `request.context_extensions.policy == "reports"`, want: true},
		{src: `claims.auth_time > 0 && claims.n > 1 && claims.n < 2 && claims.big > 1e20`, want: true},
		{src: `claims.email_verified == true && claims.address.country == "NL"`, want: true},
		{src: `request.headers[?"x-missing"].orValue("none") == "none"`, want: true},
		{src: `has(claims.missing)`, want: false},
		{src: `claims.?tenant.orValue("") == "acme" && claims.?missing.orValue("") == ""`, want: true},
		{src: `claims.missing == "x"`, wantErr: "no such key"},
		{src: `request.headers["x-missing"] == "x"`, wantErr: "no such key"},
		{src: `claims.tenant > 1`, wantErr: "no such overload"},
		{src: `claims.groups.all(g, g.size() > 0) && [1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))`, wantErr: "cost limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			p, probs := Compile(tt.src, Require)
			require.Empty(t, probs)
			got, err := p.Eval(vars())
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.False(t, got, "an error is never true")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestCompileProblems(t *testing.T) {
	tests := []struct {
		src          string
		kind         Kind
		line, column int
		msg          string
	}{
		{src: `claim.groups.exists(g, g == "x")`, line: 1, column: 1, msg: "undeclared reference to 'claim'"},
		{src: `request.method == 1`, line: 1, column: 16, msg: "no matching overload"},
		{src: `claims.groups`, line: 1, column: 1, msg: "must be a condition (bool)"},
		{src: "request.method == \"GET\" &&\n  request.path.startsWith(", line: 2, column: 27, msg: "Syntax error"},
		{src: `claims.tenant == "a"`, kind: Match, line: 1, column: 1, msg: "undeclared reference to 'claims'"},
		{src: `token.subject == "a"`, kind: Match, msg: "undeclared reference"},
		{src: `   `, line: 1, column: 1, msg: "empty"},
		{src: strings.Repeat("a || ", MaxLength) + "true", msg: "expression code point size exceeds limit"},
	}
	for _, tt := range tests {
		t.Run(tt.src[:min(len(tt.src), 40)], func(t *testing.T) {
			p, probs := Compile(tt.src, tt.kind)
			assert.Nil(t, p)
			require.NotEmpty(t, probs)
			assert.Contains(t, probs[0].Message, tt.msg)
			assert.NotContains(t, probs[0].Message, "container", "CEL's container noise is dropped")
			if tt.line != 0 {
				assert.Equal(t, tt.line, probs[0].Line, "line")
				assert.Equal(t, tt.column, probs[0].Column, "column")
			}
		})
	}
}

func TestReadsReading(t *testing.T) {
	for src, want := range map[string]bool{
		`request.path.startsWith("/a")`:                     true,
		`request.method == "GET"`:                           true,
		`request.host == "a" && "x" in request.headers`:     false,
		`claims.tenant == "a"`:                              false,
		`[request.path].exists(p, p == "/x") || now < now`:  true,
		`request.headers[?"x"].orValue("") == request.host`: false,
	} {
		p, probs := Compile(src, Require)
		require.Empty(t, probs, src)
		assert.Equal(t, want, p.ReadsReading(), src)
		assert.Equal(t, strings.Contains(src, "request.method"), p.ReadsMethod(), src)
	}
}

func TestMatchKindReadsTheRequest(t *testing.T) {
	p, probs := Compile(`request.host.endsWith(".api.example") && now.getDayOfWeek() == 3`, Match)
	require.Empty(t, probs)
	v := vars()
	v.Claims = nil
	ok, err := p.Eval(v)
	require.NoError(t, err)
	assert.True(t, ok)
}
