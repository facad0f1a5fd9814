package authzcmd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

// TestHeldCallsAreBoundedAndReleased: gRPC calls whose request never arrives (headers sent,
// no message) may wait for it up to --check-timeout, a quarter of --grpc-max-checks-in-flight
// of them per client; a call beyond that has 250 ms. A check that sends its request at once is
// answered however many calls its client holds, and every held call is ended by the service.
// (grpc-go waits for a request as long as the connection lives, holding its buffers.)
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
	ended := make(chan int, 5)
	codesSeen := make([]codes.Code, 5)
	for i := range 5 { // four within the client's quarter of 16, one beyond
		st, err := conn.NewStream(ctx, desc, checkMethod)
		require.NoError(t, err)
		go func() {
			codesSeen[i] = status.Code(st.RecvMsg(new(authv3.CheckResponse)))
			ended <- i
		}()
	}
	_, err = authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{})
	assert.NoError(t, err, "a check whose request comes at once is answered beside five held calls")

	assert.Equal(t, 4, <-ended, "the call beyond the cap ends first")
	for range 4 {
		<-ended
	}
	for i, c := range codesSeen {
		assert.NotEqual(t, codes.OK, c, "held call %d was ended by the service", i)
	}
	require.NoError(t, ctx.Err(), "…not by the test's deadline")
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

// TestIntrospectionTimeoutWithinTheCheckTimeout: a check that waits for the introspection
// endpoint must be able to answer 503 before its own deadline cuts it off.
func TestIntrospectionTimeoutWithinTheCheckTimeout(t *testing.T) {
	_, err := parseConfig([]string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "opaque",
		"--introspection-client-id", "rs", "--introspection-timeout", "15s"}, env(map[string]string{secretEnv: "s"}), io.Discard)
	assert.ErrorContains(t, err, "--introspection-timeout 15s must be shorter than --check-timeout 10s")
	_, err = parseConfig([]string{"--issuer", "https://idp.example/oauth2/default", "--introspection", "opaque",
		"--introspection-client-id", "rs", "--introspection-timeout", "15s", "--check-timeout", "20s"}, env(map[string]string{secretEnv: "s"}), io.Discard)
	assert.NoError(t, err)
}

// TestCallsBeyondTheCapLiveBriefly: within a client's quarter of --grpc-max-checks-in-flight a
// call may last --check-timeout; beyond it, 250 ms, whatever it does meanwhile (waits for its
// request, or is decided); another client has its own quarter; a call that ends gives its slot
// back.
func TestCallsBeyondTheCapLiveBriefly(t *testing.T) {
	c := newCallLimiter(time.Minute, 8, prometheus.NewRegistry()) // 2 per client
	call := func(ip string) (context.Context, context.CancelFunc) {
		parent, end := context.WithCancel(peer.NewContext(context.Background(),
			&peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}}))
		ctx, err := c.tap(parent, &tap.Info{FullMethodName: checkMethod})
		require.NoError(t, err)
		return ctx, end
	}
	life := func(ctx context.Context) time.Duration { d, _ := ctx.Deadline(); return time.Until(d) }
	first, endFirst := call("127.0.0.1")
	_, endSecond := call("127.0.0.1")
	defer endSecond()
	assert.Greater(t, life(first), 50*time.Second, "within the client's quarter: --check-timeout")
	third, endThird := call("127.0.0.1")
	defer endThird()
	assert.LessOrEqual(t, life(third), 250*time.Millisecond, "beyond it: 250 ms")
	other, endOther := call("127.0.0.2")
	defer endOther()
	assert.Greater(t, life(other), 50*time.Second, "another client's quarter")
	endFirst()
	require.Eventually(t, func() bool {
		ctx, end := call("127.0.0.1")
		defer end()
		return life(ctx) > 50*time.Second
	}, 5*time.Second, 5*time.Millisecond, "the ended call's slot is taken again")
}
