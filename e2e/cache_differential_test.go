package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/grpcapi"
	"github.com/platformauth/envoy-okta-authz/httpapi"
	"github.com/platformauth/envoy-okta-authz/internal/tokentest"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// Two policies with the same rule names and different demands and identities: a reload must
// change what a cached token gets exactly as it does for a token verified afresh.
var differentialPolicies = []string{`
identity:
  claims: [{ header: x-user-email, claim: email }]
  metadata: [email]
rules:
  - name: messages
    match: { path: /api/messages }
    require: { scopes: [messages:read] }
  - name: lean
    match: { path: /lean }
    identity: { claims_header: false }
  - name: passthrough
    match: { path: /passthrough }
    identity: { forward_authorization: true }
`, `
rules:
  - name: messages
    match: { path: /api/messages }
    require: { scopes: [messages:write] }
  - name: lean
    match: { path: /lean }
    identity:
      claims_header: true
      claims: [{ header: x-user-groups, claim: groups }]
  - name: passthrough
    match: { path: /passthrough }
    require: { scopes: [messages:read] }
`}

// frontEnds is one authorizer with its two front ends.
type frontEnds struct {
	name string
	az   *authz.Authorizer
	grpc *grpcapi.Server
	http *httpapi.Server
}

// TestCacheChangesNoDecision runs random sequences of requests, clock advances, key rotations
// and policy reloads through the service with the token cache off, on at its default size, and
// on at a size small enough that tokens move between its tiers and are evicted all the time;
// every decision, gRPC response and HTTP answer must be the same in all three.
func TestCacheChangesNoDecision(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { runDifferential(t, seed, 600) })
	}
}

func runDifferential(t *testing.T, seed uint64, steps int) {
	iss := tokentest.StartIssuer(t)
	now := tokentest.T0
	rng := rand.New(rand.NewPCG(seed, 15))
	is := token.Issuer{URL: iss.IDP.Issuer(), Audiences: []string{"api://default"}, Algs: []string{"RS256"}, Keys: iss.Keys}
	var judges []frontEnds
	for _, c := range []struct {
		name string
		size int
	}{{"uncached", -1}, {"cached", 0}, {"tiny cache", 3}} {
		v, err := token.NewVerifier(token.VerifierConfig{Issuers: []token.Issuer{is}, Leeway: 2 * time.Minute,
			Now: func() time.Time { return now }, CacheSize: c.size, NegativeCacheSize: max(c.size, 0)})
		require.NoError(t, err)
		az := authz.NewAuthorizer(v, authz.Options{Realm: "api"})
		judges = append(judges, frontEnds{c.name, az, grpcapi.New(az), httpapi.New(az, httpapi.Options{Source: httpapi.SourceNginx})})
	}
	policies := make([]*policy.Policy, len(differentialPolicies))
	for i, src := range differentialPolicies {
		p, err := policy.Load([]byte(src), []string{"default"})
		require.NoError(t, err)
		policies[i] = p
	}
	setPolicy := func(p *policy.Policy) {
		for _, j := range judges {
			j.az.SetPolicy(p)
		}
	}

	var tokens []string
	mint := func() {
		scopes := [][]string{{"messages:read"}, {"messages:read", "messages:write"}, {"messages:write"}, nil}[rng.IntN(4)]
		extra := map[string]any{
			"jti":    fmt.Sprintf("AT.%d", len(tokens)),
			"exp":    now.Add(time.Duration(rng.IntN(40)) * time.Minute).Unix(),
			"email":  fmt.Sprintf("user%d@example.com", rng.IntN(5)),
			"groups": []string{"g1", "g2"}[:rng.IntN(3)],
		}
		if rng.IntN(8) == 0 {
			extra["aud"] = "api://other"
		}
		tok, err := iss.IDP.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: scopes, Subject: fmt.Sprintf("u%d", rng.IntN(9)), Extra: extra})
		require.NoError(t, err)
		if rng.IntN(10) == 0 {
			tok = tok[:len(tok)-6] + "AAAAAA" // forged
		}
		tokens = append(tokens, tok)
	}
	for range 12 {
		mint()
	}
	paths := []string{"/api/messages", "/lean", "/passthrough", "/other", "/API/messages"}

	for step := range steps {
		switch n := rng.IntN(100); {
		case n < 8:
			now = now.Add(time.Duration(rng.IntN(12*60)) * time.Second)
		case n < 11:
			_, err := iss.IDP.Rotate()
			require.NoError(t, err)
			require.NoError(t, iss.Keys.Refresh(context.Background()))
		case n < 17:
			setPolicy(policies[rng.IntN(len(policies))])
		case n < 22:
			mint()
		default:
			tok := tokens[rng.IntN(len(tokens))]
			path := paths[rng.IntN(len(paths))]
			clientIdentity := rng.IntN(6) == 0
			compareJudges(t, judges, fmt.Sprintf("step %d, %s", step, path), tok, path, clientIdentity)
		}
	}
}

// compareJudges asks every judge about one request, requires the same answers from all, and
// returns the decision's outcome and reason.
func compareJudges(t *testing.T, judges []frontEnds, what, tok, path string, clientIdentity bool) string {
	t.Helper()
	headers := map[string]string{"authorization": "Bearer " + tok}
	if clientIdentity {
		headers["x-authz-subject"] = "admin"
	}
	type answer struct {
		outcome, reason, rule, scope string
		upstream                     []authz.Header
		removed                      []string
		grpc                         []byte
		httpStatus                   int
		httpHeaders                  http.Header
	}
	var answers []answer
	for _, j := range judges {
		r := &authz.Request{Frontend: "test", Method: "GET", Path: path, Scheme: "https", Authorization: []string{headers["authorization"]}}
		d := j.az.Decide(context.Background(), r)
		a := answer{outcome: d.Outcome.String(), rule: d.Rule, scope: d.Scope, upstream: d.UpstreamHeaders(),
			removed: d.RemovedHeaders(d.UpstreamHeaders(), nil)}
		if d.Reason != nil {
			a.reason = d.Reason.Code
		}
		resp, err := j.grpc.Check(context.Background(), envoyCheck(path, headers))
		require.NoError(t, err)
		// Deterministic encoding: map order aside, the bytes Envoy would get.
		a.grpc, err = proto.MarshalOptions{Deterministic: true}.Marshal(resp)
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("X-Original-Uri", path)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-Host", "api.example.com")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		j.http.ServeHTTP(w, req)
		a.httpStatus, a.httpHeaders = w.Code, w.Header()
		answers = append(answers, a)
	}
	for i, a := range answers[1:] {
		require.Equal(t, answers[0], a, "%s: %s and %s differ", what, judges[0].name, judges[i+1].name)
	}
	return answers[0].outcome + " " + answers[0].reason
}

// envoyCheck is the CheckRequest Envoy sends for a GET of path with headers, on the messages
// route.
func envoyCheck(path string, headers map[string]string) *authv3.CheckRequest {
	all := map[string]string{":method": "GET", ":path": path, ":authority": "api.example"}
	for k, v := range headers {
		all[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example", Path: path, Scheme: "https", Headers: all}},
		ContextExtensions: map[string]string{"policy": "messages"},
	}}
}
