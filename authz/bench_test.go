package authz

import (
	"context"
	"fmt"
	"testing"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/token"
)

// Benchmarks of the decision. Run: go test ./authz -run XXX -bench . -benchmem

// BenchmarkDecideHot is the decision for one token seen before (the verified-token cache).
func BenchmarkDecideHot(b *testing.B) {
	e := newEnv(b, nil)
	r := &Request{Method: "GET", Path: "/api/messages", Authorization: []string{"Bearer " + e.mint(b, nil)}}
	e.az.Decide(context.Background(), r)
	b.ReportAllocs()
	for b.Loop() {
		if d := e.az.Decide(context.Background(), r); d.Outcome != Allow {
			b.Fatal(d.Reason)
		}
	}
}

// BenchmarkDecideInvalidSignature is a flood of one forged token (the negative cache).
func BenchmarkDecideInvalidSignature(b *testing.B) {
	e := newEnv(b, nil)
	tok := e.mint(b, nil)
	r := &Request{Method: "GET", Path: "/", Authorization: []string{"Bearer " + tok[:len(tok)-4] + "AAAA"}}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.az.Decide(context.Background(), r); d.Outcome != InvalidToken {
			b.Fatal(d.Outcome)
		}
	}
}

func BenchmarkDecideNoToken(b *testing.B) {
	e := newEnv(b, nil)
	r := &Request{Method: "GET", Path: "/"}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.az.Decide(context.Background(), r); d.Outcome != NoCredentials {
			b.Fatal(d.Outcome)
		}
	}
}

// BenchmarkDecideWarm cycles through more tokens than the hot tier holds: each decision is a hit
// in the verified tier, which decodes the claims again but verifies no signature.
func BenchmarkDecideWarm(b *testing.B) {
	e := newEnv(b, nil)
	reqs := make([]*Request, token.HotTierSize+token.HotTierSize/4)
	for i := range reqs {
		tok := e.mint(b, map[string]any{"jti": fmt.Sprintf("AT.%d", i)})
		reqs[i] = &Request{Method: "GET", Path: "/api/messages", Authorization: []string{"Bearer " + tok}}
		e.az.Decide(context.Background(), reqs[i])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if d := e.az.Decide(context.Background(), reqs[i%len(reqs)]); d.Outcome != Allow {
			b.Fatal(d.Reason)
		}
		i++
	}
}

// BenchmarkDecideDPoP is the decision for a cached DPoP-bound token with a fresh ES256 proof:
// the proof's verification is the cost a DPoP request adds (proofs are signed beforehand).
func BenchmarkDecideDPoP(b *testing.B) {
	d := newDPoPEnv(&testing.T{}, dpop.NewMemoryStore(dpop.MemoryOptions{Max: 10_000_000}))
	tok := d.mint(b, map[string]any{"cnf": map[string]string{"jkt": d.jkt}})
	const n = 60_000 // more than b.Loop runs in a second: a proof is accepted once
	proofs := make([]string, n)
	for i := range proofs {
		p, err := devidp.Proof(d.key, "GET", dpopURI, tok, d.now)
		if err != nil {
			b.Fatal(err)
		}
		proofs[i] = p
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			b.Fatal("not enough proofs: raise n")
		}
		if dec := d.az.Decide(context.Background(), d.request("DPoP", tok, proofs[i])); dec.Outcome != Allow {
			b.Fatal(dec.Reason)
		}
		i++
	}
}

// BenchmarkDecideCondition is the hot decision under a rule with one simple condition, next to
// the same rule without it: the difference is what a condition costs (about 2 µs at most is the
// budget). The token's claims are decoded for expressions once, with the token.
func BenchmarkDecideCondition(b *testing.B) {
	for _, bc := range []struct{ name, require string }{
		{"none", `{ scopes: [messages:read] }`},
		{"claims", `{ scopes: [messages:read], cel: 'claims.groups.exists(g, g.startsWith("team-"))' }`},
		{"host", `{ scopes: [messages:read], cel: 'request.host.split(".")[0] == claims.tenant' }`},
		{"header", `{ scopes: [messages:read], cel: 'request.headers["x-tenant"] == claims.tenant' }`},
		{"path", `{ scopes: [messages:read], cel: 'request.path.startsWith("/api/")' }`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, nil)
			e.az.SetPolicy(loadPolicy(b, "rules:\n  - name: m\n    match: { path_prefix: /api }\n    require: "+bc.require+"\n"))
			tok := e.mint(b, map[string]any{"groups": []string{"users", "team-blue"}, "tenant": "acme"})
			r := &Request{Method: "GET", Host: "acme.api.example", Path: "/api/messages", Authorization: []string{"Bearer " + tok},
				Headers: testHeaders{"X-Tenant": {"acme"}, "Accept": {"application/json"}, "User-Agent": {"bench"}}}
			if d := e.az.Decide(context.Background(), r); d.Outcome != Allow {
				b.Fatal(d.Reason, d.Detail)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := e.az.Decide(context.Background(), r); d.Outcome != Allow {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}
