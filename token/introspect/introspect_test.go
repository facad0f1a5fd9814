package introspect

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
)

// endpoint is a fake introspection endpoint answering with a fixed status and body, counting
// calls; block, when set, holds each call until it is closed.
type endpoint struct {
	status int
	body   string
	calls  atomic.Int64
	block  chan struct{}
	last   atomic.Pointer[http.Request]
}

func (e *endpoint) start(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		_ = r.ParseForm()
		e.last.Store(r)
		if e.block != nil {
			<-e.block
		}
		if e.status == http.StatusFound {
			http.Redirect(w, r, "http://elsewhere.example/", http.StatusFound)
			return
		}
		w.WriteHeader(e.status)
		_, _ = w.Write([]byte(e.body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/introspect"
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Auth == "" {
		cfg.Auth, cfg.ClientID, cfg.Secret = ClientSecretBasic, "rs", "rs-secret"
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

func TestResponseShapes(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		active bool
		err    bool
	}{
		{"active", 200, fmt.Sprintf(`{"active":true,"scope":"a b","exp":%d}`, exp), true, false},
		{"only active", 200, `{"active":true}`, true, false},
		{"inactive", 200, `{"active":false}`, false, false},
		{"active as a string", 200, `{"active":"true"}`, false, false},
		{"active as a number", 200, `{"active":1}`, false, false},
		{"no active member", 200, `{"scope":"a"}`, false, false},
		{"Active in another case", 200, `{"Active":true}`, false, false},
		{"active and Active", 200, `{"active":false,"Active":true}`, false, true},
		{"active twice", 200, `{"active":false,"active":true}`, false, true},
		{"exp not a number", 200, `{"active":true,"exp":"soon"}`, false, true},
		{"not JSON", 200, `<html>ok</html>`, false, true},
		{"an array", 200, `[{"active":true}]`, false, true},
		{"too large", 200, `{"active":true,"x":"` + strings.Repeat("a", MaxResponseBytes) + `"}`, false, true},
		{"rate-limited", 429, `{"errorCode":"E0000047"}`, false, true},
		{"server error", 500, ``, false, true},
		{"the service's credentials refused", 401, `{"error":"invalid_client"}`, false, true},
		{"a redirect is no answer", 302, ``, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &endpoint{status: tc.status, body: tc.body}
			c := newClient(t, Config{Endpoint: e.start(t)})
			r, err := c.Introspect(context.Background(), "tok")
			if tc.err {
				assert.ErrorIs(t, err, ErrUnavailable)
				assert.Nil(t, r)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.active, r.Active)
			if tc.active {
				assert.Equal(t, tc.body, string(r.Body))
			}
		})
	}
}

func TestRequestShape(t *testing.T) {
	e := &endpoint{status: 200, body: `{"active":false}`}
	c := newClient(t, Config{Endpoint: e.start(t), Auth: ClientSecretBasic, ClientID: "rs:1", Secret: "s&ecret"})
	_, err := c.Introspect(context.Background(), "the-token")
	require.NoError(t, err)
	r := e.last.Load()
	assert.Equal(t, "POST", r.Method)
	assert.Equal(t, "the-token", r.PostForm.Get("token"))
	assert.Equal(t, "access_token", r.PostForm.Get("token_type_hint"))
	id, secret, ok := r.BasicAuth()
	require.True(t, ok)
	assert.Equal(t, "rs%3A1", id, "RFC 6749 §2.3.1: form-encoded before Basic")
	assert.Equal(t, "s%26ecret", secret)
}

// TestAgainstDevIssuer: every client authentication method against the dev issuer's endpoint,
// and a revocation seen once the cache lets go.
func TestAgainstDevIssuer(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(ecKey)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "rs.pem")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	key, err := LoadKey(keyFile)
	require.NoError(t, err)
	assert.Equal(t, "ES256", key.Alg.String())

	idp, srv := devidptest.Start(t, devidp.Config{Clients: map[string]devidp.Client{
		"app":       {Secret: "app-secret", Scopes: []string{"messages:read"}, Opaque: true},
		"rs":        {Secret: "rs-secret"},
		"rs-key":    {AssertionKey: &ecKey.PublicKey},
		"rs-public": {Public: true},
	}})
	tok, err := devidp.RequestToken(context.Background(), srv.Client(), idp.Issuer(), "app", "app-secret", "messages:read")
	require.NoError(t, err)
	endpoint := idp.Issuer() + "/v1/introspect"
	for _, cfg := range []Config{
		{Auth: ClientSecretBasic, ClientID: "rs", Secret: "rs-secret"},
		{Auth: ClientSecretPost, ClientID: "rs", Secret: "rs-secret"},
		{Auth: ClientSecretJWT, ClientID: "rs", Secret: "rs-secret"},
		{Auth: PrivateKeyJWT, ClientID: "rs-key", Key: key},
		{Auth: None, ClientID: "rs-public"},
	} {
		cfg.Endpoint = endpoint
		c := newClient(t, cfg)
		r, err := c.Introspect(context.Background(), tok)
		require.NoError(t, err, cfg.Auth)
		assert.True(t, r.Active, cfg.Auth)
		assert.Equal(t, `"messages:read"`, string(r.Members["scope"]), cfg.Auth)
	}
	wrong := newClient(t, Config{Endpoint: endpoint, Auth: ClientSecretBasic, ClientID: "rs", Secret: "wrong"})
	_, err = wrong.Introspect(context.Background(), tok)
	assert.ErrorIs(t, err, ErrUnavailable, "refused credentials say nothing of the token")

	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newClient(t, Config{Endpoint: endpoint, Auth: ClientSecretBasic, ClientID: "rs", Secret: "rs-secret",
		CacheTTL: time.Minute, Now: clock})
	r, err := c.Introspect(context.Background(), tok)
	require.NoError(t, err)
	require.True(t, r.Active)
	idp.Revoke(tok)
	r, _ = c.Introspect(context.Background(), tok)
	assert.True(t, r.Active, "within the cache TTL: the revocation window")
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	r, err = c.Introspect(context.Background(), tok)
	require.NoError(t, err)
	assert.False(t, r.Active, "revoked, once the cache lets go")
}

func TestCaching(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	e := &endpoint{status: 200, body: fmt.Sprintf(`{"active":true,"exp":%d}`, now.Add(30*time.Second).Unix())}
	c := newClient(t, Config{Endpoint: e.start(t), CacheTTL: time.Minute, NegativeTTL: 10 * time.Second, Now: clock})
	for range 3 {
		r, err := c.Introspect(context.Background(), "a")
		require.NoError(t, err)
		require.True(t, r.Active)
	}
	assert.Equal(t, int64(1), e.calls.Load(), "an active result is reused")
	advance(30 * time.Second)
	_, _ = c.Introspect(context.Background(), "a")
	assert.Equal(t, int64(2), e.calls.Load(), "never past the token's exp, though the TTL is longer")

	e.body = `{"active":false}`
	_, _ = c.Introspect(context.Background(), "b")
	_, _ = c.Introspect(context.Background(), "b")
	assert.Equal(t, int64(3), e.calls.Load(), "an inactive result is remembered briefly")
	advance(11 * time.Second)
	_, _ = c.Introspect(context.Background(), "b")
	assert.Equal(t, int64(4), e.calls.Load())

	e.status = 503
	for range 2 {
		_, err := c.Introspect(context.Background(), "c")
		assert.ErrorIs(t, err, ErrUnavailable)
	}
	assert.Equal(t, int64(6), e.calls.Load(), "failures are never cached")
}

func TestOneCallPerToken(t *testing.T) {
	e := &endpoint{status: 200, body: `{"active":true}`, block: make(chan struct{})}
	c := newClient(t, Config{Endpoint: e.start(t)})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			r, err := c.Introspect(context.Background(), "same")
			assert.NoError(t, err)
			assert.True(t, r.Active)
		})
	}
	require.Eventually(t, func() bool { return e.calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	close(e.block)
	wg.Wait()
	assert.Equal(t, int64(1), e.calls.Load(), "50 concurrent requests with one token make one call")
}

// TestInFlightLimits: calls beyond the limit fail at once, and opaque tokens — strings anyone
// can make up — hold at most half of the slots, so calls for verified tokens always have the
// other half.
func TestInFlightLimits(t *testing.T) {
	e := &endpoint{status: 200, body: `{"active":true}`, block: make(chan struct{})}
	c := newClient(t, Config{Endpoint: e.start(t), MaxInFlight: 4})
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { _, _ = c.Introspect(context.Background(), fmt.Sprint("made-up-", i)) })
	}
	require.Eventually(t, func() bool { return e.calls.Load() == 2 }, 5*time.Second, time.Millisecond)
	_, err := c.Introspect(context.Background(), "made-up-3")
	assert.ErrorIs(t, err, ErrUnavailable, "opaque tokens hold half of the slots at most")
	for i := range 2 {
		wg.Go(func() { _, _ = c.IntrospectVerified(context.Background(), fmt.Sprint("verified-", i)) })
	}
	require.Eventually(t, func() bool { return e.calls.Load() == 4 }, 5*time.Second, time.Millisecond)
	_, err = c.IntrospectVerified(context.Background(), "verified-3")
	assert.ErrorIs(t, err, ErrUnavailable, "no pile-up behind a slow endpoint")
	assert.Equal(t, int64(4), e.calls.Load())
	close(e.block)
	wg.Wait()
}

// TestOpaqueFailuresDoNotTripVerified: a flood of made-up tokens that the endpoint refuses
// (Okta's 429) opens the opaque tokens' breaker only.
func TestOpaqueFailuresDoNotTripVerified(t *testing.T) {
	e := &endpoint{status: http.StatusTooManyRequests}
	c := newClient(t, Config{Endpoint: e.start(t)})
	for i := range breakerThreshold + 3 {
		_, err := c.Introspect(context.Background(), fmt.Sprint("made-up-", i))
		assert.ErrorIs(t, err, ErrUnavailable)
	}
	assert.Equal(t, int64(breakerThreshold), e.calls.Load(), "the opaque breaker opened")
	e.status, e.body = 200, `{"active":true}`
	r, err := c.IntrospectVerified(context.Background(), "verified")
	require.NoError(t, err, "verified tokens are still asked about")
	assert.True(t, r.Active)
}

// TestLargeAnswersAreNotCached: the cache holds bodies up to MaxCachedBytes, so its memory is
// bounded well below CacheSize × MaxResponseBytes.
func TestLargeAnswersAreNotCached(t *testing.T) {
	big := `{"active":true,"pad":"` + strings.Repeat("x", MaxCachedBytes) + `"}`
	e := &endpoint{status: 200, body: big}
	c := newClient(t, Config{Endpoint: e.start(t)})
	for range 2 {
		r, err := c.IntrospectVerified(context.Background(), "big")
		require.NoError(t, err)
		assert.True(t, r.Active)
	}
	assert.Equal(t, int64(2), e.calls.Load())
	e.body = `{"active":true}`
	for range 2 {
		_, err := c.IntrospectVerified(context.Background(), "small")
		require.NoError(t, err)
	}
	assert.Equal(t, int64(3), e.calls.Load(), "a small answer is cached")
}

func TestBreaker(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := &endpoint{status: 500}
	c := newClient(t, Config{Endpoint: e.start(t), Now: clock})
	for i := range breakerThreshold + 5 {
		_, err := c.Introspect(context.Background(), fmt.Sprint(i))
		assert.ErrorIs(t, err, ErrUnavailable)
	}
	assert.Equal(t, int64(breakerThreshold), e.calls.Load(), "a dead endpoint is not asked again while the breaker is open")
	e.status, e.body = 200, `{"active":true}`
	mu.Lock()
	now = now.Add(breakerCooldown)
	mu.Unlock()
	r, err := c.Introspect(context.Background(), "probe")
	require.NoError(t, err, "after the cooldown a probe goes")
	assert.True(t, r.Active)
	_, err = c.Introspect(context.Background(), "next")
	assert.NoError(t, err, "and a success closes it")
}

func TestTheTokenIsNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	c := newClient(t, Config{Endpoint: "http://127.0.0.1:1/introspect", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const tok = "secret-token-value"
	_, err := c.Introspect(context.Background(), tok)
	require.ErrorIs(t, err, ErrUnavailable)
	assert.NotContains(t, err.Error(), tok)
	assert.NotContains(t, logs.String(), tok)
	assert.NotContains(t, logs.String(), "rs-secret")
	assert.Contains(t, logs.String(), "introspection failed")
}

func TestConfigChecks(t *testing.T) {
	for _, cfg := range []Config{
		{Endpoint: "ftp://x/introspect", Auth: None},
		{Endpoint: "https://x/introspect", Auth: ClientSecretBasic},
		{Endpoint: "https://x/introspect", Auth: PrivateKeyJWT, ClientID: "a"},
		{Endpoint: "https://x/introspect", Auth: "magic"},
	} {
		_, err := New(cfg)
		assert.Error(t, err, "%+v", cfg)
	}
	_, err := New(Config{Endpoint: "https://rs:hunter2@x/introspect", Auth: None})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2", "the user info may be a password")
	_, err = ParseAuth("client_secret_post")
	assert.NoError(t, err)
	_, err = ParseAuth("basic")
	assert.Error(t, err)
}

// TestLoadKeyRefusesWeakRSA: an RSA key under 2048 bits is refused whether or not its JWK
// names an algorithm.
func TestLoadKeyRefusesWeakRSA(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	weak.Precompute()
	enc := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }
	b, err := json.Marshal(map[string]string{"kty": "RSA", "alg": "RS256", "n": enc(weak.N), "e": enc(big.NewInt(int64(weak.E))),
		"d": enc(weak.D), "p": enc(weak.Primes[0]), "q": enc(weak.Primes[1]), "dp": enc(weak.Precomputed.Dp),
		"dq": enc(weak.Precomputed.Dq), "qi": enc(weak.Precomputed.Qinv)})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "weak.jwk")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	_, err = LoadKey(path)
	assert.ErrorContains(t, err, "2048")
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"active":true,"scope":"a","exp":1900000000}`, `{"active":false}`, `{"active":true,"Active":false}`,
		`{"active":tru}`, `{"active":true,"exp":1e400}`, `{"a":{"b":[1,2]},"active":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parse(body)
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("an error that is not ErrUnavailable: %v", err)
			}
			return
		}
		if r.Active && !bytes.Contains(body, []byte("true")) {
			t.Fatalf("%q read as active", body)
		}
		if r.Active && string(r.Members["active"]) != "true" {
			t.Fatalf("%q: active member %q", body, r.Members["active"])
		}
	})
}
