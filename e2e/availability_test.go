package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/internal/testenv"
)

// hostileService is the authz binary in a process of its own, limited to a few thousand file
// descriptors, with its default connection and message limits.
type hostileService struct {
	pid                    int
	grpc, http, admin, idp string
	token                  string
}

// startLimitedService builds cmd/authz and runs it under `ulimit -n fds` with --dev (a dev
// issuer whose key the test shares, to mint tokens).
func startLimitedService(t *testing.T, fds int) *hostileService {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "authz")
	build := exec.Command("go", "build", "-o", bin, "./cmd/authz")
	build.Dir = ".."
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	key := filepath.Join(dir, "dev-key.pem")
	signing, _, err := devidp.LoadSigningKey(key)
	require.NoError(t, err)

	s := &hostileService{grpc: testenv.FreeAddr(t), http: testenv.FreeAddr(t), admin: testenv.FreeAddr(t), idp: testenv.FreeAddr(t)}
	cmd := exec.Command("sh", "-c", fmt.Sprintf("ulimit -n %d && exec %s \"$@\"", fds, bin), "sh",
		"--dev", "--dev-key", key, "--dev-addr", s.idp, "--grpc-addr", s.grpc, "--http-addr", s.http,
		"--admin-addr", s.admin, "--log-level", "error")
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	require.NoError(t, cmd.Start())
	s.pid = cmd.Process.Pid
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("service log:\n%s", logs)
		}
	})
	require.Eventually(t, func() bool { return httpStatus("http://"+s.admin+"/readyz") == 200 }, 30*time.Second, 20*time.Millisecond)

	idp, err := devidp.New(devidp.Config{Issuer: devidp.IssuerFor(s.idp), SigningKey: signing,
		Clients: map[string]devidp.Client{"c": {Secret: "s", Scopes: []string{"messages:read"}}}})
	require.NoError(t, err)
	s.token, err = idp.Mint(devidp.TokenRequest{ClientID: "c", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	return s
}

func httpStatus(url string) int {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rss is the process's resident memory in bytes.
func rss(t *testing.T, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// legit is a well-behaved client on 127.0.0.1: each call opens a new gRPC connection (as a
// new Envoy would) and checks one request; it records the latency.
type legit struct {
	s         *hostileService
	mu        sync.Mutex
	latencies []time.Duration
}

func (l *legit) check(t *testing.T) {
	t.Helper()
	conn, err := grpc.NewClient(l.s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest(l.s.token))
	elapsed := time.Since(start)
	require.NoError(t, err, "a legitimate check must be answered")
	require.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
	l.mu.Lock()
	l.latencies = append(l.latencies, elapsed)
	l.mu.Unlock()
}

// report logs and resets the latencies: p50 and p99 (these figures go to docs/performance.md).
func (l *legit) report(t *testing.T, phase string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.latencies)
	n := len(l.latencies)
	if n == 0 {
		return
	}
	t.Logf("%-34s legitimate checks: %d, p50 %s, p99 %s (new connection each)", phase, n,
		l.latencies[n/2].Round(10*time.Microsecond), l.latencies[n*99/100].Round(10*time.Microsecond))
	l.latencies = nil
}

func checkRequest(token string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/secure", Host: "api.example",
			Headers: map[string]string{"authorization": "Bearer " + token}}}}}
}

// dialIdle opens n TCP connections to addr from the loopback address src, sends nothing, and
// keeps them open until the test ends; it returns how many the service kept (it closes a
// refused one at once: a read sees EOF). The service closes idle ones too, after its
// handshake (gRPC, 10 s) or header (HTTP, 5 s) timeout: count before that.
func dialIdle(t *testing.T, src, addr string, n int) int {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	var conns []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var kept atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(300 * time.Millisecond)
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(deadline)
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				kept.Add(1) // timed out waiting, or (gRPC) got the server's SETTINGS
			}
		})
	}
	wg.Wait()
	return int(kept.Load())
}

// TestHostileClientsCannotTakeTheServiceDown runs the service in a process limited to 4096
// descriptors, with its default limits, and attacks it as a neighbour that reaches its ports
// would, while a legitimate client keeps checking over new connections: thousands of idle
// connections from one client, the listeners' caps filled by several, 4 MiB CheckRequests, and
// streams opened and cancelled as fast as possible. Health and legitimate checks must answer
// throughout, and memory stay under the manifest's 256 MiB limit. (Without limits, 20,000
// idle connections exhausted the descriptors and every port stopped answering; 200 concurrent
// 4 MiB requests took 3.26 GB.)
func TestHostileClientsCannotTakeTheServiceDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and floods it")
	}
	s := startLimitedService(t, 4096)
	l := &legit{s: s}
	for range 50 {
		l.check(t)
	}
	l.report(t, "baseline")

	// One client opens thousands of idle connections to each port: it keeps its share.
	for _, addr := range []string{s.grpc, s.http} {
		kept := dialIdle(t, "127.0.0.2", addr, 3000)
		assert.Equal(t, 256, kept, "one client keeps --max-connections-per-client on %s", addr)
	}
	assert.Equal(t, 8, dialIdle(t, "127.0.0.2", s.admin, 500), "and 8 on the admin port")
	// Probes come from one more address (the node's): a few clients filling their admin share
	// leave them room.
	for _, ip := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		assert.Equal(t, 8, dialIdle(t, ip, s.admin, 40))
	}
	assert.Equal(t, 200, httpStatus("http://"+s.admin+"/healthz"), "probes answer beside four clients' admin connections")
	for range 50 {
		l.check(t)
	}
	assert.Equal(t, 200, httpStatus("http://"+s.admin+"/readyz"), "health answers")
	l.report(t, "one client, 6,500 idle connections")

	// Several clients fill a listener's cap: established connections keep working, and the
	// admin port, on its own budget, answers.
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	established := authv3.NewAuthorizationClient(conn)
	_, err = established.Check(context.Background(), checkRequest(s.token))
	require.NoError(t, err)
	// Four more clients fill the rest of the cap (the first one's connections may have timed
	// out meanwhile: a fifth and sixth take their place), and then no more get in.
	total := 0
	for i := 3; i <= 8; i++ {
		total += dialIdle(t, fmt.Sprintf("127.0.0.%d", i), s.grpc, 256)
	}
	open := metricsValue(t, s.admin, `authz_connections_open{listener="grpc"}`)
	assert.Equal(t, 1024.0, open, "the listener holds --max-connections (%d kept by the last clients)", total)
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := established.Check(ctx, checkRequest(s.token))
		cancel()
		require.NoError(t, err, "an established connection keeps working at the cap")
		require.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
	}
	assert.Equal(t, 200, httpStatus("http://"+s.admin+"/healthz"))
	assert.Equal(t, 200, httpStatus("http://"+s.admin+"/readyz"))
	assert.Greater(t, metricsValue(t, s.admin, `authz_connections_refused_total{listener="grpc",reason="per_client"}`), 2000.0)
	assert.Greater(t, metricsValue(t, s.admin, `authz_connections_refused_total{listener="grpc",reason="max"}`), 0.0)
	t.Logf("descriptors in use at the cap: %d of 4096", openFDs(t, s.pid))
}

// TestLargeMessagesAndStreamChurn: 200 concurrent 4 MiB CheckRequests from one client are
// refused before they are read (RESOURCE_EXHAUSTED), and memory stays bounded; streams opened
// and cancelled in a tight loop cost the legitimate client little.
func TestLargeMessagesAndStreamChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and floods it")
	}
	s := startLimitedService(t, 4096)
	l := &legit{s: s}
	before := rss(t, s.pid)

	big := checkRequest(s.token)
	big.Attributes.Request.Http.Body = strings.Repeat("x", 4<<20)
	// Encoded once and sent as bytes: the attacker's own encoding of 800 MiB would otherwise
	// take the cores the service and the legitimate client need.
	encoded, err := proto.Marshal(big)
	require.NoError(t, err)
	var peak int64
	var wg sync.WaitGroup
	var refused, other sync.Map
	for c := range 8 {
		conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()), fromAttacker)
		require.NoError(t, err)
		defer conn.Close()
		for i := range 25 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				req, reply := rawMessage(encoded), rawMessage(nil)
				err := conn.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", &req, &reply,
					grpc.ForceCodecV2(rawCodec{}))
				key := fmt.Sprint(c, i)
				if grpcstatus.Code(err) == codes.ResourceExhausted {
					refused.Store(key, true)
				} else {
					other.Store(key, err)
				}
			})
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			l.check(t)
			peak = max(peak, rss(t, s.pid))
		}
	}
	n := 0
	refused.Range(func(_, _ any) bool { n++; return true })
	other.Range(func(k, v any) bool { t.Errorf("request %v: %v, want RESOURCE_EXHAUSTED", k, v); return true })
	assert.Equal(t, 200, n)
	assert.Less(t, peak, int64(256<<20), "memory stays under the manifest's limit")
	t.Logf("200 concurrent 4 MiB requests: RSS %d MiB before, peak %d MiB", before>>20, peak>>20)
	l.report(t, "200 concurrent 4 MiB requests")

	// Streams opened and reset at once (HEADERS, then RST_STREAM: the "rapid reset" pattern)
	// as fast as one client can, on a few connections.
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Second)
	defer stop()
	var churned sync.WaitGroup
	var opened [4]int
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
	for c := range 4 {
		conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()), fromAttacker)
		require.NoError(t, err)
		defer conn.Close()
		churned.Go(func() {
			for ctx.Err() == nil {
				cctx, cancel := context.WithCancel(ctx)
				if st, err := conn.NewStream(cctx, desc, "/envoy.service.auth.v3.Authorization/Check"); err == nil {
					_ = st.SendMsg(checkRequest(s.token))
				}
				cancel()
				opened[c]++
			}
		})
	}
	for ctx.Err() == nil {
		l.check(t)
	}
	churned.Wait()
	t.Logf("stream churn: %d streams opened and cancelled in 3 s", opened[0]+opened[1]+opened[2]+opened[3])
	l.report(t, "stream churn")
	assert.Equal(t, 200, httpStatus("http://"+s.admin+"/readyz"))

	// Calls whose request never comes: headers (with metadata just under the cap) and no
	// message, 256 streams on each of 16 connections from one client, held. grpc-go would wait
	// for each request as long as the connection lives; the service lets a client's calls last
	// --check-timeout up to a quarter of --grpc-max-checks-in-flight, and 250 ms beyond.
	before = rss(t, s.pid)
	md := metadata.MD{}
	for i := range 3 {
		md.Append(fmt.Sprint("x-pad-", i), strings.Repeat("p", 4000))
	}
	hctx, hold := context.WithCancel(context.Background())
	var endedHeld atomic.Int64
	var holders sync.WaitGroup
	for range 16 {
		conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()), fromAttacker)
		require.NoError(t, err)
		defer conn.Close()
		for range 256 {
			holders.Go(func() {
				st, err := conn.NewStream(metadata.NewOutgoingContext(hctx, md), desc, "/envoy.service.auth.v3.Authorization/Check")
				if err == nil {
					err = st.RecvMsg(new(authv3.CheckResponse)) // until the server ends it, or the test does
				}
				if err != nil && hctx.Err() == nil {
					endedHeld.Add(1) // ended by the service, not by the test
				}
			})
		}
	}
	peak = 0
	for range 50 {
		l.check(t)
		peak = max(peak, rss(t, s.pid))
	}
	held := metricsValue(t, s.admin, `authz_grpc_calls_in_flight{kind="check"}`)
	hold()
	holders.Wait()
	assert.LessOrEqual(t, held, 256.0+1, "one client holds at most a quarter of the cap (and the legitimate one its own)")
	assert.Greater(t, endedHeld.Load(), int64(3000), "the rest of the 4,096 calls were ended within 250 ms")
	assert.Less(t, peak, int64(256<<20), "memory stays under the manifest's limit")
	t.Logf("4,096 held calls: %d ended by the service, %v in flight within the cap; RSS %d MiB before, peak %d MiB", endedHeld.Load(), held, before>>20, peak>>20)
	l.report(t, "held calls")
}

// fromAttacker dials from 127.0.0.9: the attacker is another client than the legitimate one
// (127.0.0.1), as a proxy is another host than a hostile pod.
var fromAttacker = grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}
	return d.DialContext(ctx, "tcp", addr)
})

// rawMessage is a message already encoded, sent and received as it is by rawCodec.
type rawMessage []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*rawMessage))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*rawMessage) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// metricsValue reads one series' value from the admin port's metrics.
func metricsValue(t *testing.T, admin, series string) float64 {
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

func openFDs(t *testing.T, pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	return len(entries)
}
