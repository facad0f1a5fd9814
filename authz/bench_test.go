package authz

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/dpop"
)

// Benchmarks of the decision path. Run: go test ./authz -run XXX -bench . -benchmem

func BenchmarkBearerToken(b *testing.B) {
	v := []string{"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := accessToken(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCold verifies a distinct token each time: RS256 and claims, no cache.
func BenchmarkVerifyCold(b *testing.B) {
	e := newEnv(b, nil)
	e.v.cache = nil
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i] = e.mint(b, map[string]any{"jti": fmt.Sprintf("AT.%d", i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := e.v.Verify(context.Background(), tokens[i%len(tokens)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

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

// BenchmarkCheckHot is the whole gRPC front end for a cached token, minus the transport.
func BenchmarkCheckHot(b *testing.B) {
	e := newEnv(b, nil)
	s := NewGRPCServer(e.az)
	req := checkRequest("/api/messages", map[string]string{"authorization": "Bearer " + e.mint(b, nil)}, false)
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := s.Check(context.Background(), req); resp.GetStatus().GetCode() != 0 {
			b.Fatal(resp.GetStatus())
		}
	}
}

// BenchmarkDecideWarm cycles through more tokens than the hot tier holds: each decision is a hit
// in the verified tier, which decodes the claims again but verifies no signature.
func BenchmarkDecideWarm(b *testing.B) {
	e := newEnv(b, nil)
	reqs := make([]*Request, hotSize+hotSize/4)
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

// BenchmarkCheckHotLean is BenchmarkCheckHot with a lean identity: two claim headers, no
// x-authz-claims.
func BenchmarkCheckHotLean(b *testing.B) {
	e := newEnv(b, nil)
	p, err := LoadPolicy([]byte("identity:\n  claims_header: false\n  claims: [{header: x-user-email, claim: email}, {header: x-user-groups, claim: groups}]\n"), []string{"default"})
	if err != nil {
		b.Fatal(err)
	}
	e.az.SetPolicy(p)
	s := NewGRPCServer(e.az)
	tok := e.mint(b, map[string]any{"email": "ada@example.com", "groups": []string{"admins", "users"}})
	req := checkRequest("/api/messages", map[string]string{"authorization": "Bearer " + tok}, false)
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := s.Check(context.Background(), req); resp.GetStatus().GetCode() != 0 {
			b.Fatal(resp.GetStatus())
		}
	}
}

// BenchmarkCheckWarm is the gRPC front end for tokens past the hot tier: the claims are decoded
// again and the allow response built and encoded anew.
func BenchmarkCheckWarm(b *testing.B) {
	e := newEnv(b, nil)
	s := NewGRPCServer(e.az)
	reqs := make([]*authv3.CheckRequest, hotSize+hotSize/4)
	for i := range reqs {
		tok := e.mint(b, map[string]any{"jti": fmt.Sprintf("AT.%d", i)})
		reqs[i] = checkRequest("/api/messages", map[string]string{"authorization": "Bearer " + tok}, false)
		_, _ = s.Check(context.Background(), reqs[i])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		resp, _ := s.Check(context.Background(), reqs[i%len(reqs)])
		if resp.GetStatus().GetCode() != 0 {
			b.Fatal(resp.GetStatus())
		}
		if _, err := s.wire.Marshal(resp); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkHTTPHot is the HTTP decision API's handler for a cached token, as nginx asks.
func BenchmarkHTTPHot(b *testing.B) {
	e := newEnv(b, nil)
	s := NewHTTPServer(e.az, HTTPOptions{})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for k, v := range map[string]string{"X-Original-Uri": "/api/messages", "X-Original-Method": "GET",
		"X-Original-Host": "api.example.com", "X-Forwarded-Proto": "https", "User-Agent": "curl/8.5.0",
		"Accept": "*/*", "X-Request-Id": "5b0c1c44", "Authorization": "Bearer " + e.mint(b, nil)} {
		req.Header.Set(k, v)
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		s.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatal(w.status)
		}
	}
}

// discardWriter is a ResponseWriter that keeps only the status, so the benchmark measures the
// handler.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

// BenchmarkHTTPWarm is the HTTP decision API's handler for tokens past the hot tier.
func BenchmarkHTTPWarm(b *testing.B) {
	e := newEnv(b, nil)
	s := NewHTTPServer(e.az, HTTPOptions{})
	reqs := make([]*http.Request, hotSize+hotSize/4)
	w := &discardWriter{h: http.Header{}}
	for i := range reqs {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		for k, v := range map[string]string{"X-Original-Uri": "/api/messages", "X-Original-Method": "GET",
			"X-Original-Host": "api.example.com", "X-Forwarded-Proto": "https",
			"Authorization": "Bearer " + e.mint(b, map[string]any{"jti": fmt.Sprintf("AT.%d", i)})} {
			req.Header.Set(k, v)
		}
		reqs[i] = req
		s.ServeHTTP(w, req)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clear(w.h)
		s.ServeHTTP(w, reqs[i%len(reqs)])
		if w.status != http.StatusOK {
			b.Fatal(w.status)
		}
		i++
	}
}
