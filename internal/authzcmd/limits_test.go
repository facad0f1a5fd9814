package authzcmd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

// TestHeldCallsAreBoundedAndReleased: gRPC calls whose request never arrives (headers sent,
// no message) take a slot each; beyond a quarter of --grpc-max-checks-in-flight one client's
// next check is refused at once (RESOURCE_EXHAUSTED) while another client's is answered, and a
// held call ends at --check-timeout (DEADLINE_EXCEEDED), which gives its slot back. Without the
// deadline grpc-go waits for the message as long as the connection lives, holding its buffers.
func TestHeldCallsAreBoundedAndReleased(t *testing.T) {
	idp, _ := devidptest.Start(t, devidp.Config{})
	ls, stop := startService(t, slog.New(slog.DiscardHandler), "--issuer", idp.Issuer(), "--allow-http-issuer",
		"--check-timeout", "1s", "--grpc-max-checks-in-flight", "16")
	defer func() { require.NoError(t, stop()) }()
	conn, err := grpc.NewClient(ls.grpc.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the test's bound, not the server's
	defer cancel()

	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
	var held []grpc.ClientStream
	for range 4 {
		st, err := conn.NewStream(ctx, desc, checkMethod)
		require.NoError(t, err)
		held = append(held, st)
	}
	// One connection: the server reads the four calls' headers before this one's.
	check := authv3.NewAuthorizationClient(conn)
	_, err = check.Check(ctx, &authv3.CheckRequest{})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "the client's fifth check is refused: %v", err)
	other, err := grpc.NewClient(ls.grpc.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			return d.DialContext(ctx, "tcp", addr)
		}))
	require.NoError(t, err)
	defer other.Close()
	_, err = authv3.NewAuthorizationClient(other).Check(ctx, &authv3.CheckRequest{})
	assert.NoError(t, err, "another client's check is answered")

	start := time.Now()
	for _, st := range held {
		err := st.RecvMsg(new(authv3.CheckResponse))
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "the server ends a held call: %v", err)
	}
	assert.Less(t, time.Since(start), 10*time.Second)
	require.Eventually(t, func() bool {
		_, err := check.Check(ctx, &authv3.CheckRequest{})
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the slots were given back: a check is answered")
}

// TestSmallerMaxConnectionsLowersThePerClientDefault: --max-connections below the per-client
// default (256) starts, one client then allowed them all; a per-client limit given above it is
// still refused. (The chart's maxConnections: 100 crash-looped the pods.)
func TestSmallerMaxConnectionsLowersThePerClientDefault(t *testing.T) {
	c, err := parseConfig([]string{"--issuer", "https://idp.example/oauth2/default", "--max-connections", "100"}, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 100, c.Limits.MaxConnsPerClient)
	_, err = parseConfig([]string{"--issuer", "https://idp.example/oauth2/default", "--max-connections", "100",
		"--max-connections-per-client", "200"}, env(nil), io.Discard)
	assert.ErrorContains(t, err, "--max-connections-per-client 200")
}
