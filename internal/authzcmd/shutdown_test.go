package authzcmd

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

// TestShutdownDrainsFirst: on SIGTERM (the run context ending) readiness and gRPC health turn
// NOT_SERVING at once while both decision listeners keep answering, new connections included,
// for --shutdown-drain; only then do the listeners close. (They used to close at once, and
// /readyz stayed 200 until the admin listener went: Envoy kept sending to the pod and got
// errors.)
func TestShutdownDrainsFirst(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	c, err := parseConfig([]string{"--issuer", idp.Issuer(), "--allow-http-issuer", "--shutdown-drain", "3s",
		"--http-request-headers", "envoy", "--http-path-prefix", "/authz",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, env(nil), io.Discard)
	require.NoError(t, err)
	ls, err := listen(c)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, ls, slog.New(slog.DiscardHandler)) }()

	admin := "http://" + ls.admin.Addr().String()
	status := httpGetStatus
	require.Eventually(t, func() bool { return status(admin+"/readyz") == 200 }, 10*time.Second, 10*time.Millisecond)
	token, err := idp.Mint(devidp.TokenRequest{ClientID: "c", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	checkOn := func(conn *grpc.ClientConn) codes.Code {
		resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x",
				Host: "api.example", Headers: map[string]string{"authorization": "Bearer " + token}}}}})
		require.NoError(t, err)
		return codes.Code(resp.GetStatus().GetCode())
	}
	dial := func() *grpc.ClientConn {
		conn, err := grpc.NewClient(ls.grpc.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	before := dial()
	require.Equal(t, codes.OK, checkOn(before))
	health := healthpb.NewHealthClient(before)

	cancel() // SIGTERM
	require.Eventually(t, func() bool { return status(admin+"/readyz") == http.StatusServiceUnavailable }, 2*time.Second, 5*time.Millisecond,
		"readiness goes first")
	r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: grpcServiceName})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, r.GetStatus())
	assert.Equal(t, 200, status(admin+"/healthz"), "alive: no restart")
	// Still serving, on the old connection and on new ones, both front ends.
	assert.Equal(t, codes.OK, checkOn(before))
	assert.Equal(t, codes.OK, checkOn(dial()))
	req, err := http.NewRequest("GET", "http://"+ls.http.Addr().String()+"/authz/x", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.True(t, resp.Close, "keep-alive ends while draining: the proxy reconnects elsewhere")
	select {
	case err := <-done:
		t.Fatalf("stopped during the drain: %v", err)
	default:
	}

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop after the drain")
	}
	_, err = http.Get(admin + "/healthz")
	assert.Error(t, err, "the listeners are closed after the drain")
}

// TestSIGHUPNeverEndsTheService: a SIGHUP to a service without --policy (nothing to reload) is
// caught and logged, not Go's default, which ends the process — this test's, were it not caught.
func TestSIGHUPNeverEndsTheService(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	logs := &syncBuffer{}
	ls, stop := startService(t, slog.New(slog.NewJSONHandler(logs, nil)), "--issuer", idp.Issuer(), "--allow-http-issuer")
	defer func() { require.NoError(t, stop()) }()
	readyz := "http://" + ls.admin.Addr().String() + "/readyz"
	require.Eventually(t, func() bool { return httpGetStatus(readyz) == http.StatusOK }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "SIGHUP: no --policy to reload") }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, http.StatusOK, httpGetStatus(readyz), "still serving")
}

// httpGetStatus is the status of a GET, 0 when none came.
func httpGetStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
