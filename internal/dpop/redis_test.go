package dpop

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/testenv"
)

// redisServer starts Debian's redis-server on a free loopback port. Without it the test skips
// locally and fails in CI, where .ci/run installs it.
func redisServer(t *testing.T) (addr string, stop func()) {
	t.Helper()
	bin := testenv.Program(t, "redis-server", "redis-server")
	_, port, err := net.SplitHostPort(testenv.FreeAddr(t))
	require.NoError(t, err)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--requirepass", "test-password", "--logfile", filepath.Join(dir, "redis.log"))
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
	addr = "127.0.0.1:" + port
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		defer c.Close()
		fmt.Fprint(c, "AUTH test-password\r\nPING\r\n")
		r := bufio.NewReader(c)
		_, _ = r.ReadString('\n')
		line, _ := r.ReadString('\n')
		return strings.HasPrefix(line, "+PONG")
	}, 10*time.Second, 20*time.Millisecond, "redis-server did not start")
	return addr, stop
}

// TestRedisStoreSharesProofsAndFailsClosed: two replicas' stores on one real Redis see each
// other's proofs; when Redis goes away a check errs within the timeout instead of hanging or
// accepting.
func TestRedisStoreSharesProofsAndFailsClosed(t *testing.T) {
	addr, stop := redisServer(t)
	url := "redis://:test-password@" + addr + "/0"
	a, err := NewRedisStore(RedisOptions{URL: url})
	require.NoError(t, err)
	defer a.Close()
	b, err := NewRedisStore(RedisOptions{URL: url})
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	require.NoError(t, a.Ping(ctx))

	first, err := a.FirstUse(ctx, use("k", "shared", time.Now()))
	require.NoError(t, err)
	assert.True(t, first)
	first, err = b.FirstUse(ctx, use("k", "shared", time.Now()))
	require.NoError(t, err)
	assert.False(t, first, "replica b sees the proof replica a accepted")

	wrong, err := NewRedisStore(RedisOptions{URL: "redis://:nope@" + addr + "/0"})
	require.NoError(t, err)
	defer wrong.Close()
	_, err = wrong.FirstUse(ctx, use("k", "x", time.Now()))
	assert.Error(t, err, "a wrong password is an error, not a first use")

	stop()
	start := time.Now()
	first, err = a.FirstUse(ctx, use("k", "after", time.Now()))
	assert.Error(t, err, "Redis gone: an error")
	assert.False(t, first)
	assert.Less(t, time.Since(start), 2*time.Second, "bounded by the timeout")

	_, err = NewRedisStore(RedisOptions{URL: "http://" + addr})
	assert.Error(t, err)
}

// TestFallbackWhenRedisGoesAway: with Redis gone, deny refuses (an error) and local checks this
// replica's memory; both report the failure.
func TestFallbackWhenRedisGoesAway(t *testing.T) {
	addr, stop := redisServer(t)
	r, err := NewRedisStore(RedisOptions{URL: "redis://:test-password@" + addr + "/0"})
	require.NoError(t, err)
	defer r.Close()
	var failures int
	deny := &Fallback{Primary: r, OnError: func(error) { failures++ }}
	local := &Fallback{Primary: r, Local: NewMemoryStore(MemoryOptions{}), OnError: func(error) { failures++ }}
	ctx := context.Background()
	first, err := deny.FirstUse(ctx, use("k", "before", time.Now()))
	require.NoError(t, err)
	assert.True(t, first)

	stop()
	_, err = deny.FirstUse(ctx, use("k", "during", time.Now()))
	assert.Error(t, err, "deny: the proof is not accepted")
	first, err = local.FirstUse(ctx, use("k", "during", time.Now()))
	require.NoError(t, err)
	assert.True(t, first, "local: checked in memory")
	first, err = local.FirstUse(ctx, use("k", "during", time.Now()))
	require.NoError(t, err)
	assert.False(t, first, "local: a replay on this replica is still caught")
	assert.Equal(t, 3, failures, "every failure is reported")
}
