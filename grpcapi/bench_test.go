package grpcapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/platformauth/envoy-okta-authz/internal/authztest"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
	"github.com/platformauth/envoy-okta-authz/token/introspect"
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

// BenchmarkCheckIntrospectedHot is BenchmarkCheckHot for an opaque token whose introspection
// answer is cached: what a cached answer costs next to a cached JWT (go test -bench
// 'CheckHot$|CheckIntrospectedHot').
func BenchmarkCheckIntrospectedHot(b *testing.B) {
	var issuer string
	answer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"active":true,"iss":%q,"aud":"api://default","client_id":"app","sub":"app","scope":"messages:read","token_type":"Bearer","exp":%d,"iat":%d}`,
			issuer, tokentest.T0.Add(time.Hour).Unix(), tokentest.T0.Unix())
	}))
	b.Cleanup(answer.Close)
	client, err := introspect.New(introspect.Config{Endpoint: answer.URL, Auth: introspect.None, CacheTTL: time.Hour,
		Now: func() time.Time { return tokentest.T0 }})
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b, &authztest.Options{Issuer: func(is *token.Issuer) {
		issuer = is.URL
		is.Introspection = &token.Introspection{Mode: token.IntrospectOpaque, Client: client}
	}})
	s := New(e.az)
	req := checkRequest("/api/messages", map[string]string{"authorization": "Bearer opaque-token-0123456789abcdef"}, false)
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := s.Check(context.Background(), req); resp.GetStatus().GetCode() != 0 {
			b.Fatal(resp.GetStatus())
		}
	}
}
