package authzcmd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfigReportsEveryProblem(t *testing.T) {
	_, err := parseConfig([]string{"--audience", " , ", "--algs", "none,HS256,XX1", "--grpc-addr", "nope", "--leeway", "-1s", "--http-request-headers", "haproxy"}, env(nil), io.Discard)
	require.Error(t, err)
	for _, want := range []string{"--issuer is required", "--audience", `"none"`, `"HS256"`, `"XX1"`, "--grpc-addr", "--leeway", "--http-request-headers"} {
		assert.ErrorContains(t, err, want)
	}
}

func TestParseConfigHTTPIssuer(t *testing.T) {
	_, err := parseConfig([]string{"--issuer", "http://idp.local/oauth2/default"}, env(nil), io.Discard)
	assert.ErrorContains(t, err, "--allow-http-issuer")
	c, err := parseConfig([]string{"--issuer", "http://idp.local/oauth2/default", "--allow-http-issuer"}, env(nil), io.Discard)
	require.NoError(t, err)
	assert.True(t, c.AllowHTTPIssuer)
}

func TestParseConfigEnvironmentAndFlagPrecedence(t *testing.T) {
	e := env(map[string]string{
		"AUTHZ_ISSUER":     "https://example.okta.com/oauth2/default",
		"AUTHZ_AUDIENCE":   "api://env",
		"AUTHZ_CLIENT_IDS": "a, b",
		"AUTHZ_LEEWAY":     "30s",
		"AUTHZ_GRPC_ADDR":  ":7001",
	})
	c, err := parseConfig([]string{"--audience", "api://flag,api://two"}, e, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "https://example.okta.com/oauth2/default", c.Issuer)
	assert.Equal(t, []string{"api://flag", "api://two"}, c.Audiences, "the flag wins over the environment")
	assert.Equal(t, []string{"a", "b"}, c.ClientIDs)
	assert.Equal(t, 30*time.Second, c.Leeway)
	assert.Equal(t, ":7001", c.GRPCAddr)
	assert.Equal(t, []string{"RS256"}, c.Algs)
	assert.Empty(t, c.Warnings)

	_, err = parseConfig(nil, env(map[string]string{"AUTHZ_ISSUER": "https://x.example", "AUTHZ_LEEWAY": "soon"}), io.Discard)
	assert.ErrorContains(t, err, "AUTHZ_LEEWAY")
}

func TestOktaOrgServerWarning(t *testing.T) {
	c, err := parseConfig([]string{"--issuer", "https://dev-123.okta.com"}, env(nil), io.Discard)
	require.NoError(t, err)
	require.Len(t, c.Warnings, 1)
	assert.Contains(t, c.Warnings[0], "org authorization server")
	assert.Contains(t, c.Warnings[0], "https://dev-123.okta.com/oauth2/default")

	c, err = parseConfig([]string{"--issuer", "https://dev-123.okta.com/oauth2/default"}, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Empty(t, c.Warnings)
}

// startService runs the service with args, on loopback ports of its own, and returns its
// listeners and a stop function that shuts it down and returns run's result.
func startService(t *testing.T, log *slog.Logger, args ...string) (*listeners, func() error) {
	t.Helper()
	c, err := parseConfig(append([]string{"--shutdown-drain", "0"}, append(args, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--admin-addr", "127.0.0.1:0")...), env(nil), io.Discard)
	require.NoError(t, err)
	ls, err := listen(c)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, ls, log) }()
	return ls, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("service did not stop")
		}
	}
}

// syncBuffer is a log sink safe for the service's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServiceEndToEnd runs the real service on loopback ports against a dev issuer: health
// turns SERVING once keys load, Check allows and denies over real gRPC, reflection lists the
// service, /readyz answers, the log never holds the token, and shutdown is clean.
func TestServiceEndToEnd(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	logs := &syncBuffer{}
	ls, stop := startService(t, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		"--issuer", idp.Issuer(), "--allow-http-issuer", "--log-level", "debug")
	ctx := context.Background()

	conn, err := grpc.NewClient(ls.grpc.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()

	health := healthpb.NewHealthClient(conn)
	require.Eventually(t, func() bool {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: grpcServiceName})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	}, 10*time.Second, 10*time.Millisecond, "health turns SERVING once keys load")

	token, err := idp.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	client := authv3.NewAuthorizationClient(conn)
	check := func(authz string) *authv3.CheckResponse {
		h := map[string]string{":path": "/api/messages"}
		if authz != "" {
			h["authorization"] = authz
		}
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/messages", Headers: h}},
		}})
		require.NoError(t, err)
		return resp
	}
	assert.Equal(t, int32(codes.OK), check("Bearer "+token).GetStatus().GetCode())
	assert.Equal(t, int32(codes.Unauthenticated), check("").GetStatus().GetCode())
	tampered := token[:len(token)-4] + "AAAA"
	assert.Equal(t, int32(codes.Unauthenticated), check("Bearer "+tampered).GetStatus().GetCode())

	// grpcurl relies on reflection.
	rctx, rcancel := context.WithCancel(ctx)
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(rctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	rr, err := stream.Recv()
	rcancel() // end the stream, or graceful shutdown would wait for it
	require.NoError(t, err)
	var names []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	assert.Contains(t, names, grpcServiceName)

	// Admin endpoints.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get("http://" + ls.admin.Addr().String() + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, path)
	}

	// Metrics.
	mresp, err := http.Get("http://" + ls.admin.Addr().String() + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	require.NoError(t, err)
	for _, want := range []string{
		`authz_checks_total{decision="allow",frontend="grpc",reason="ok",scheme="bearer"} 1`,
		`authz_checks_total{decision="no_credentials",frontend="grpc",reason="no_token",scheme="none"} 1`,
		`authz_checks_total{decision="invalid_token",frontend="grpc",reason="bad_signature",scheme="bearer"} 1`,
		`authz_check_duration_seconds_count{frontend="grpc"} 3`,
		`authz_jwks_fetches_total{issuer="default",result="success",trigger="startup"} 1`,
		`authz_jwks_keys{issuer="default"} 1`,
		`authz_jwks_last_success_timestamp_seconds{issuer="default"}`,
		`authz_token_cache_entries 1`,
		`authz_token_cache_misses_total 2`,
		`go_goroutines`,
		`process_open_fds`,
	} {
		assert.Contains(t, string(metrics), want)
	}

	// The HTTP decision API answers the same way (here as nginx asks it).
	req, _ := http.NewRequest("GET", "http://"+ls.http.Addr().String()+"/_authz", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Original-URI", "/api/messages")
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-Host", "api.example")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	assert.NoError(t, stop(), "graceful shutdown is success")
	out := logs.String()
	assert.Contains(t, out, `"decision":"invalid_token"`)
	assert.NotContains(t, out, token, "the log must never contain a token")
	assert.NotContains(t, out, tampered)
	assert.NotContains(t, strings.ToLower(out), "bearer ")
}

func TestReadyzBeforeKeysLoad(t *testing.T) {
	// An issuer that never answers keeps the service not ready, and Check answers 503.
	block := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(block) // runs first: lets the hanging fetch return so Close need not wait
	issuer := hang.URL + "/oauth2/default"
	ls, stop := startService(t, slog.New(slog.DiscardHandler), "--issuer", issuer, "--allow-http-issuer")
	defer stop()
	ctx := context.Background()

	resp, err := http.Get("http://" + ls.admin.Addr().String() + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)

	conn, err := grpc.NewClient(ls.grpc.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: grpcServiceName})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, r.GetStatus())

	idp, _ := devidptest.Start(t, devidp.Config{})
	token, err := idp.Mint(devidp.TokenRequest{ClientID: "c", Extra: map[string]any{"iss": issuer}})
	require.NoError(t, err)
	cr, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/messages",
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "authorization", RawValue: []byte("Bearer " + token)}}},
		}},
	}})
	require.NoError(t, err)
	assert.Equal(t, int32(codes.Unavailable), cr.GetStatus().GetCode(), "no key set yet: 503, not an allow and not a 401")
	assert.Equal(t, int32(503), int32(cr.GetDeniedResponse().GetStatus().GetCode()))
}

func TestRecoverUnaryFailsClosed(t *testing.T) {
	var logs syncBuffer
	interceptor := recoverUnary(slog.New(slog.NewJSONHandler(&logs, nil)))
	resp, err := interceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/envoy.service.auth.v3.Authorization/Check"},
		func(context.Context, any) (any, error) { panic("boom") })
	assert.Nil(t, resp, "no response, so no accidental allow")
	assert.Equal(t, codes.Internal, status.Code(err), "an error: Envoy applies status_on_error")
	assert.Contains(t, logs.String(), "panic in gRPC handler")
}
