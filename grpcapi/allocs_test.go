//go:build !race

// The race detector changes what allocates; these budgets hold for normal builds.

package grpcapi

import (
	"context"
	"testing"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/internal/authztest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
)

// TestHotCheckAllocations holds the hot path to its budget: a cached token's decision
// allocates nothing, metrics included (nor does a request without one), and the gRPC front end
// only the request it adapts (tracing off).
func TestHotCheckAllocations(t *testing.T) {
	e := newEnv(t, &authztest.Options{Authorizer: authz.Options{Metrics: authz.NewMetrics(prometheus.NewRegistry())}})
	tok := "Bearer " + e.mint(t, nil)
	r := &authz.Request{Method: "GET", Path: "/api/messages", Authorization: []string{tok}}
	assert.Zero(t, testing.AllocsPerRun(100, func() { e.az.Decide(context.Background(), r) }), "Decide")
	noToken := &authz.Request{Method: "GET", Path: "/api/messages"}
	assert.Zero(t, testing.AllocsPerRun(100, func() { e.az.Decide(context.Background(), noToken) }), "Decide without a token")

	s := New(e.az)
	req := checkRequest("/api/messages", map[string]string{"authorization": tok}, false)
	assert.LessOrEqual(t, testing.AllocsPerRun(100, func() { _, _ = s.Check(context.Background(), req) }), 2.0, "Check")
}
