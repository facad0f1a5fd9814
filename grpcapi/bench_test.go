package grpcapi

import (
	"context"
	"fmt"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// Benchmarks of the gRPC front end. Run: go test ./grpcapi -run XXX -bench . -benchmem

// BenchmarkCheckHot is the whole gRPC front end for a cached token, minus the transport.
func BenchmarkCheckHot(b *testing.B) {
	e := newEnv(b, nil)
	s := New(e.az)
	req := checkRequest("/api/messages", map[string]string{"authorization": "Bearer " + e.mint(b, nil)}, false)
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := s.Check(context.Background(), req); resp.GetStatus().GetCode() != 0 {
			b.Fatal(resp.GetStatus())
		}
	}
}

// BenchmarkCheckHotLean is BenchmarkCheckHot with a lean identity: two claim headers, no
// x-authz-claims.
func BenchmarkCheckHotLean(b *testing.B) {
	e := newEnv(b, nil)
	p, err := policy.Load([]byte("identity:\n  claims_header: false\n  claims: [{header: x-user-email, claim: email}, {header: x-user-groups, claim: groups}]\n"), []string{"default"})
	if err != nil {
		b.Fatal(err)
	}
	e.az.SetPolicy(p)
	s := New(e.az)
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
	s := New(e.az)
	reqs := make([]*authv3.CheckRequest, token.HotTierSize+token.HotTierSize/4)
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
