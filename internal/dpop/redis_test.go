package dpop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/testenv"
)

const redisPassword = "test-password"

// redisServer starts Debian's redis-server on a free loopback port, with extra configuration
// args, and returns its address and a client for the test's own commands. Without the program
// the test skips locally and fails in CI, where .ci/run installs it. With tls, the port speaks
// TLS only (certificates made for the test).
func redisServer(t *testing.T, tls bool, args ...string) (addr string, admin *redis.Client, stop func()) {
	t.Helper()
	bin := testenv.Program(t, "redis-server", "redis-server")
	_, port, err := net.SplitHostPort(testenv.FreeAddr(t))
	require.NoError(t, err)
	dir := t.TempDir()
	base := []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--requirepass", redisPassword, "--logfile", filepath.Join(dir, "redis.log")}
	adminOpts := &redis.Options{Addr: "127.0.0.1:" + port, Password: redisPassword, DisableIdentity: true}
	if tls {
		cert, key := testCertificate(t, dir)
		base = append(base, "--port", "0", "--tls-port", port, "--tls-cert-file", cert, "--tls-key-file", key,
			"--tls-ca-cert-file", cert, "--tls-auth-clients", "no")
		adminOpts.TLSConfig = tlsSkipVerify()
	}
	cmd := exec.Command(bin, append(base, args...)...)
	require.NoError(t, cmd.Start())
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	admin = redis.NewClient(adminOpts)
	t.Cleanup(func() { _ = admin.Close() })
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return admin.Ping(ctx).Err() == nil
	}, 10*time.Second, 20*time.Millisecond, "redis-server did not start")
	return "127.0.0.1:" + port, admin, stop
}

// testCertificate writes a self-signed certificate for 127.0.0.1 and its key into dir.
func testCertificate(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

func tlsSkipVerify() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } // #nosec: a test's own server

// newRedisStore opens a store and waits until it has read Redis's eviction policy and, when
// answering, until it answers (a sender has connected).
func newRedisStore(t *testing.T, o RedisOptions, answering bool) *RedisStore {
	t.Helper()
	r, err := NewRedisStore(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	i := 0
	require.Eventually(t, func() bool {
		if !answering {
			return !r.policy.Load().unread
		}
		i++
		_, err := r.FirstUse(context.Background(), now(fmt.Sprint("ready-", i)))
		return err == nil
	}, 30*time.Second, 10*time.Millisecond, "the store never answered")
	return r
}

// now is a proof issued now: Redis keeps it for the window from now, on its own clock.
func now(jti string) Use { return use("k", jti, time.Now()) }

// TestRedisStoreSharesProofsAndFailsClosed: two replicas' stores on one real Redis see each
// other's proofs; when Redis goes away a check errs within the timeout instead of hanging or
// accepting.
func TestRedisStoreSharesProofsAndFailsClosed(t *testing.T) {
	addr, _, stop := redisServer(t, false)
	url := "redis://:" + redisPassword + "@" + addr + "/0"
	a := newRedisStore(t, RedisOptions{URL: url}, true)
	b := newRedisStore(t, RedisOptions{URL: url}, true)
	ctx := context.Background()

	shared := now("shared")
	first, err := a.FirstUse(ctx, shared)
	require.NoError(t, err)
	assert.True(t, first)
	first, err = b.FirstUse(ctx, shared)
	require.NoError(t, err)
	assert.False(t, first, "replica b sees the proof replica a accepted")

	wrong, err := NewRedisStore(RedisOptions{URL: "redis://:nope@" + addr + "/0"})
	require.NoError(t, err)
	defer wrong.Close()
	require.Eventually(t, func() bool {
		_, err = wrong.FirstUse(ctx, now("x"))
		return strings.Contains(fmt.Sprint(err), "WRONGPASS")
	}, 10*time.Second, 10*time.Millisecond, "a wrong password is an error, not a first use, and says so: %v", err)

	stop()
	start := time.Now()
	first, err = a.FirstUse(ctx, now("after"))
	assert.Error(t, err, "Redis gone: an error")
	assert.False(t, first)
	assert.Less(t, time.Since(start), 2*DefaultRedisTimeout, "bounded by the timeout")

	_, err = NewRedisStore(RedisOptions{URL: "http://" + addr})
	assert.Error(t, err)
}

// TestRedisStoreAtItsMemoryLimit: Redis must never evict a proof before it expires, or the
// proof passes again. With maxmemory-policy noeviction a full Redis refuses the SET: an
// error, the proof is not accepted. With a policy that evicts the store refuses every check
// until the policy is noeviction; without a maxmemory no policy evicts. A Redis that will not
// say (CONFIG renamed away) is used, with a warning.
func TestRedisStoreAtItsMemoryLimit(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		limit     bool   // set maxmemory a little above what Redis uses at start
		refused   string // what every check is refused with; "" accepts
		fills     bool   // the store fills up: then Redis refuses
		warning   string
		fixPolicy bool // CONFIG SET maxmemory-policy noeviction then works
	}{
		{name: "noeviction fills and refuses", args: []string{"--maxmemory-policy", "noeviction"}, limit: true, fills: true},
		{name: "allkeys-lru is refused", args: []string{"--maxmemory-policy", "allkeys-lru"}, limit: true, refused: "maxmemory-policy allkeys-lru may evict", fixPolicy: true},
		{name: "volatile-ttl is refused", args: []string{"--maxmemory-policy", "volatile-ttl"}, limit: true, refused: "maxmemory-policy volatile-ttl may evict"},
		{name: "allkeys-lru without maxmemory", args: []string{"--maxmemory-policy", "allkeys-lru"}},
		{name: "CONFIG renamed away", args: []string{"--rename-command", "CONFIG", ""}, warning: "cannot read Redis's eviction policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, admin, _ := redisServer(t, false, tt.args...)
			ctx := context.Background()
			if tt.limit {
				info, err := admin.Info(ctx, "memory").Result()
				require.NoError(t, err)
				require.NoError(t, admin.ConfigSet(ctx, "maxmemory", strconv.Itoa(usedMemory(t, info)+1<<20)).Err())
			}
			var logged bytes.Buffer
			r := newRedisStore(t, RedisOptions{URL: "redis://:" + redisPassword + "@" + addr + "/0",
				Log: slog.New(slog.NewTextHandler(&logged, nil))}, tt.refused == "")
			if tt.warning != "" {
				assert.Contains(t, logged.String(), tt.warning)
			}
			if tt.refused != "" {
				_, err := r.FirstUse(ctx, now("a"))
				assert.ErrorContains(t, err, tt.refused)
				assert.Equal(t, int64(0), admin.DBSize(ctx).Val(), "nothing was written")
				assert.Contains(t, logged.String(), "every DPoP proof is refused")
				if !tt.fixPolicy {
					return
				}
				require.NoError(t, admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())
				r.checkPolicy(ctx)
				assert.Contains(t, logged.String(), "Redis does not evict proofs")
			}
			first, err := r.FirstUse(ctx, now("a"))
			require.NoError(t, err)
			require.True(t, first)
			if !tt.fills {
				return
			}
			// Fill it: concurrent checks until Redis refuses. No proof is ever accepted twice.
			var (
				mu       sync.Mutex
				accepted = map[string]bool{}
				refusals int
			)
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Go(func() {
					for i := 0; ; i++ {
						jti := fmt.Sprint(w, "-", i)
						first, err := r.FirstUse(ctx, now(jti))
						mu.Lock()
						if err != nil {
							assert.ErrorContains(t, err, "OOM")
							refusals++
						} else {
							assert.True(t, first)
							accepted[jti] = true
						}
						stop := refusals > 0
						mu.Unlock()
						if stop || i > 100_000 {
							return
						}
					}
				})
			}
			wg.Wait()
			require.Positive(t, refusals, "Redis filled up")
			for jti := range accepted {
				first, err := r.FirstUse(ctx, now(jti))
				assert.False(t, first, "a proof accepted before the store filled is never accepted again (%v)", err)
			}
		})
	}
}

func usedMemory(t *testing.T, info string) int {
	t.Helper()
	var used int
	for _, line := range bytes.Split([]byte(info), []byte("\r\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("used_memory:")); ok {
			n, err := strconv.Atoi(string(v))
			require.NoError(t, err)
			used = n
		}
	}
	require.Positive(t, used)
	return used
}

// slowLink is a TCP proxy on a free loopback port in front of target that delays every byte
// by oneWay in each direction: a link whose round trip is twice oneWay (bandwidth unlimited).
func slowLink(t *testing.T, target string, oneWay time.Duration) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				_ = client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			go delayedCopy(server, client, oneWay)
			go delayedCopy(client, server, oneWay)
		}
	}()
	return l.Addr().String()
}

// delayedCopy copies src to dst in order, each read oneWay after it arrived; it closes both
// when either ends. (The delay is the link's latency, not a wait for an outcome.)
func delayedCopy(dst, src net.Conn, oneWay time.Duration) {
	type chunk struct {
		due time.Time
		b   []byte
	}
	chunks := make(chan chunk, 4096)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{time.Now().Add(oneWay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	for range chunks { // let the reader finish
	}
}

// TestRedisStoreBehindASlowLink: with Redis 100 ms away (a round trip through a delaying proxy),
// checks answer within the default 250 ms budget: connections are set up in the background
// (two round trips and more, which no check waits for), and a burst of concurrent checks
// shares them. With rediss:// set-up costs more round trips, checks none. After Redis drops
// every connection, the store sets them up again without a check paying for it. (Before,
// every check set up its own connection within its budget: 256 of 256 were refused, in every
// round.)
func TestRedisStoreBehindASlowLink(t *testing.T) {
	tests := []struct {
		name   string
		tls    bool
		oneWay time.Duration
		burst  int // concurrent checks; 0: one at a time
	}{
		{"100 ms round trip, a burst of 256", false, 50 * time.Millisecond, 256},
		{"100 ms round trip over TLS, a burst of 256", true, 50 * time.Millisecond, 256},
		{"150 ms round trip, one at a time", false, 75 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, admin, _ := redisServer(t, tt.tls)
			scheme, query := "redis", ""
			if tt.tls {
				// The test's certificate is self-signed: what is measured here is the round
				// trips TLS adds, not its verification.
				scheme, query = "rediss", "?skip_verify=true"
			}
			r := newRedisStore(t, RedisOptions{URL: scheme + "://:" + redisPassword + "@" + slowLink(t, addr, tt.oneWay) + "/0" + query}, true)
			ctx := context.Background()
			check := func(jti string) error {
				first, err := r.FirstUse(ctx, now(jti))
				if err == nil && !first {
					err = fmt.Errorf("%s: seen before", jti)
				}
				return err
			}
			run := func(round string) []error {
				n := max(tt.burst, 1)
				errs := make([]error, n)
				var wg sync.WaitGroup
				for i := range n {
					if tt.burst == 0 {
						errs[i] = check(round)
						continue
					}
					wg.Go(func() { errs[i] = check(fmt.Sprint(round, "-", i)) })
				}
				wg.Wait()
				return errs
			}
			// Three rounds answer in full. A round may be retried twice: a check is refused at
			// 250 ms where it needs 100 (200 in a burst's worst case), which a loaded test
			// machine can stretch; the old store lost every check of every round.
			rounds := func(name string) {
				t.Helper()
				answered := 0
				for round := 0; round < 5 && answered < 3; round++ {
					start := time.Now()
					failed := 0
					for _, err := range run(fmt.Sprint(name, "-", round)) {
						if err != nil {
							failed++
						}
					}
					t.Logf("%s round %d: %d checks refused, answered in %s", name, round, failed, time.Since(start))
					if failed == 0 {
						answered++
					}
				}
				require.Equal(t, 3, answered, "%s: rounds answered in full", name)
			}
			rounds("warm")

			// Redis drops every connection: checks are refused while the store sets its
			// connections up again in the background, then they all answer again.
			killed, err := admin.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Result()
			require.NoError(t, err)
			require.Positive(t, killed)
			attempt := 0
			require.Eventually(t, func() bool {
				attempt++
				for _, err := range run(fmt.Sprint("reconnect-", attempt)) {
					if err != nil {
						return false
					}
				}
				return true
			}, 10*time.Second, 20*time.Millisecond, "checks never answered again")
			rounds("reconnected")
		})
	}
}

// TestRedisStoreRefusesWhileThePolicyIsUnread: a store that could not ask Redis yet refuses,
// saying why, rather than answer without knowing whether Redis evicts.
func TestRedisStoreRefusesWhileThePolicyIsUnread(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { // accepts, never answers
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	r, err := NewRedisStore(RedisOptions{URL: "redis://" + l.Addr().String() + "/0", ConnectTimeout: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	start := time.Now()
	_, err = r.FirstUse(context.Background(), now("a"))
	assert.ErrorContains(t, err, "eviction policy")
	assert.Less(t, time.Since(start), DefaultRedisTimeout)
}

// TestFallbackWhenRedisGoesAway: with Redis gone, deny refuses (an error) and local checks this
// replica's memory; both report the failure.
func TestFallbackWhenRedisGoesAway(t *testing.T) {
	addr, _, stop := redisServer(t, false)
	r := newRedisStore(t, RedisOptions{URL: "redis://:" + redisPassword + "@" + addr + "/0"}, true)
	var failures int
	deny := &Fallback{Primary: r, OnError: func(error) { failures++ }}
	local := &Fallback{Primary: r, Local: NewMemoryStore(MemoryOptions{}), OnError: func(error) { failures++ }}
	ctx := context.Background()
	first, err := deny.FirstUse(ctx, now("before"))
	require.NoError(t, err)
	assert.True(t, first)

	stop()
	during := now("during")
	_, err = deny.FirstUse(ctx, during)
	assert.Error(t, err, "deny: the proof is not accepted")
	first, err = local.FirstUse(ctx, during)
	require.NoError(t, err)
	assert.True(t, first, "local: checked in memory")
	first, err = local.FirstUse(ctx, during)
	require.NoError(t, err)
	assert.False(t, first, "local: a replay on this replica is still caught")
	assert.Equal(t, 3, failures, "every failure is reported")
}
