package jwks

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rsaKey is generated once per package: RSA generation is slow.
var rsaKey, rsaKey2 = mustRSA(2048), mustRSA(2048)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

// jwkJSON renders a public key as a JWK with the given members.
func jwkJSON(t *testing.T, pub any, members map[string]any) map[string]any {
	t.Helper()
	k, err := jwk.Import(pub)
	require.NoError(t, err)
	for n, v := range members {
		require.NoError(t, k.Set(n, v))
	}
	b, err := json.Marshal(k)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// shortRSA renders a too-short RSA key by hand (jwx refuses to import one).
func shortRSA(k *rsa.PrivateKey, kid string) map[string]any {
	return map[string]any{
		"kty": "RSA", "kid": kid,
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
	}
}

// issuer is a fake authorization server whose responses a test controls.
type issuer struct {
	srv          *httptest.Server
	mu           sync.Mutex
	keys         []map[string]any
	cacheControl string
	status       int           // key set status; 0 means 200
	block        chan struct{} // when non-nil, key set requests wait for it to close
	metaIssuer   string        // issuer in metadata; default the server's own
	noOAuthMeta  bool          // 404 on oauth-authorization-server (OIDC-only issuer)
	keyFetches   atomic.Int32
	metaFetches  atomic.Int32
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{}
	mux := http.NewServeMux()
	meta := func(w http.ResponseWriter, r *http.Request) {
		is.metaFetches.Add(1)
		if is.noOAuthMeta && strings.HasSuffix(r.URL.Path, "oauth-authorization-server") {
			http.NotFound(w, r)
			return
		}
		iss := is.issuerURL()
		is.mu.Lock()
		if is.metaIssuer != "" {
			iss = is.metaIssuer
		}
		is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": is.issuerURL() + "/v1/keys"})
	}
	mux.HandleFunc("/oauth2/default/.well-known/oauth-authorization-server", meta)
	mux.HandleFunc("/oauth2/default/.well-known/openid-configuration", meta)
	mux.HandleFunc("/oauth2/default/v1/keys", func(w http.ResponseWriter, r *http.Request) {
		is.keyFetches.Add(1)
		is.mu.Lock()
		block, status, cc := is.block, is.status, is.cacheControl
		body, _ := json.Marshal(map[string]any{"keys": is.keys})
		is.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		_, _ = w.Write(body)
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) issuerURL() string { return is.srv.URL + "/oauth2/default" }

func (is *issuer) set(f func(is *issuer)) {
	is.mu.Lock()
	defer is.mu.Unlock()
	f(is)
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newSet(t *testing.T, opts Options) *Set {
	t.Helper()
	if opts.Algs == nil {
		opts.Algs = []string{"RS256"}
	}
	opts.AllowHTTP = true
	s, err := New(opts)
	require.NoError(t, err)
	return s
}

func TestDiscoveryVariants(t *testing.T) {
	tests := []struct {
		name      string
		configure func(is *issuer)
		issuer    func(is *issuer) string
		wantErr   string
	}{
		{name: "oauth metadata", issuer: (*issuer).issuerURL},
		{name: "issuer with trailing slash", issuer: func(is *issuer) string { return is.issuerURL() + "/" }},
		{name: "openid-configuration fallback", configure: func(is *issuer) { is.noOAuthMeta = true }, issuer: (*issuer).issuerURL},
		{
			name:      "metadata names another issuer",
			configure: func(is *issuer) { is.metaIssuer = "https://evil.example/oauth2/default" },
			issuer:    (*issuer).issuerURL,
			wantErr:   "names issuer",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := newIssuer(t)
			is.set(func(is *issuer) {
				is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1", "alg": "RS256", "use": "sig"})}
			})
			if tt.configure != nil {
				is.set(tt.configure)
			}
			s := newSet(t, Options{Issuer: tt.issuer(is)})
			err := s.Refresh(context.Background())
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				assert.False(t, s.Loaded())
				return
			}
			require.NoError(t, err)
			k, err := s.Key(context.Background(), "k1")
			require.NoError(t, err)
			assert.Equal(t, []string{"RS256"}, k.Algs)
		})
	}
}

func TestJWKSURLSkipsDiscovery(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1"})}
	})
	s := newSet(t, Options{Issuer: "https://unused.example/oauth2/default", JWKSURL: is.issuerURL() + "/v1/keys"})
	require.NoError(t, s.Refresh(context.Background()))
	assert.Equal(t, int32(0), is.metaFetches.Load(), "metadata must not be fetched when the key set URL is given")
	assert.Equal(t, []string{"k1"}, s.KeyIDs())
}

func TestOnlyAllowedSigningKeysAreUsed(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{
			jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "rs256", "alg": "RS256"}),
			jwkJSON(t, &rsaKey2.PublicKey, map[string]any{"kid": "rs512", "alg": "RS512"}),
			jwkJSON(t, &rsaKey2.PublicKey, map[string]any{"kid": "enc", "use": "enc"}),
			jwkJSON(t, &ec.PublicKey, map[string]any{"kid": "ec"}),
			shortRSA(mustRSA(1024), "short"),
			jwkJSON(t, &rsaKey.PublicKey, map[string]any{}), // no kid
			jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "dup"}),
			jwkJSON(t, &rsaKey2.PublicKey, map[string]any{"kid": "dup"}),
		}
	})
	s := newSet(t, Options{Issuer: is.issuerURL(), Algs: []string{"RS256", "PS256"}})
	require.NoError(t, s.Refresh(context.Background()))
	assert.Equal(t, []string{"rs256"}, s.KeyIDs(), "only the RS256 signing key fits the allowlist")
	k, err := s.Key(context.Background(), "rs256")
	require.NoError(t, err)
	assert.True(t, k.Allows("RS256"))
	assert.False(t, k.Allows("PS256"), "a key that names its alg is used with that alg only")
}

func TestNoUsableKeyKeepsLastGoodSet(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1"})}
	})
	s := newSet(t, Options{Issuer: is.issuerURL()})
	require.NoError(t, s.Refresh(context.Background()))

	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k2", "use": "enc"})}
	})
	require.ErrorContains(t, s.Refresh(context.Background()), "no usable signing key")
	is.set(func(is *issuer) { is.status = http.StatusInternalServerError })
	require.ErrorContains(t, s.Refresh(context.Background()), "status 500")

	_, err := s.Key(context.Background(), "k1")
	assert.NoError(t, err, "an outage or a broken set must keep the last good set")
}

func TestRotationAndUnknownKIDRefetch(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "old"})}
	})
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	s := newSet(t, Options{Issuer: is.issuerURL(), Now: clk.Now, MinRefetch: 30 * time.Second})
	require.NoError(t, s.Refresh(context.Background()))
	fetches := is.keyFetches.Load()

	// The issuer rotates: a token with the new kid arrives before the scheduled refresh.
	is.set(func(is *issuer) {
		is.keys = append(is.keys, jwkJSON(t, &rsaKey2.PublicKey, map[string]any{"kid": "new"}))
	})
	k, err := s.Key(context.Background(), "new")
	require.NoError(t, err, "an unknown kid triggers a refetch")
	assert.Equal(t, "new", k.ID)
	assert.Equal(t, fetches+1, is.keyFetches.Load())

	// Within MinRefetch, another unknown kid is denied without a fetch.
	_, err = s.Key(context.Background(), "other")
	assert.ErrorIs(t, err, ErrUnknownKID)
	assert.Equal(t, fetches+1, is.keyFetches.Load(), "refetches are rate-limited")

	clk.Advance(31 * time.Second)
	_, err = s.Key(context.Background(), "other")
	assert.ErrorIs(t, err, ErrUnknownKID)
	assert.Equal(t, fetches+2, is.keyFetches.Load(), "after MinRefetch one more fetch is allowed")
}

func TestUnknownKIDStormIsOneFetch(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1"})}
	})
	s := newSet(t, Options{Issuer: is.issuerURL()})
	require.NoError(t, s.Refresh(context.Background()))
	before := is.keyFetches.Load()

	var wg sync.WaitGroup
	for i := range 500 {
		wg.Go(func() {
			_, err := s.Key(context.Background(), fmt.Sprintf("random-%d", i))
			assert.ErrorIs(t, err, ErrUnknownKID)
		})
	}
	wg.Wait()
	assert.Equal(t, before+1, is.keyFetches.Load(), "500 tokens with random kids must cost one fetch")
}

func TestSlowIssuerNeverStallsKnownKeys(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1"})}
	})
	s := newSet(t, Options{Issuer: is.issuerURL()})
	require.NoError(t, s.Refresh(context.Background()))

	block := make(chan struct{})
	defer close(block)
	is.set(func(is *issuer) { is.block = block })
	// An unknown kid starts a refetch that hangs on the issuer.
	started := make(chan struct{})
	go func() {
		close(started)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = s.Key(ctx, "unknown")
	}()
	<-started
	require.Eventually(t, func() bool { return is.keyFetches.Load() == 2 }, 5*time.Second, time.Millisecond)

	// A known key is served from the snapshot at once, even with an already-expired context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k, err := s.Key(ctx, "k1")
	require.NoError(t, err)
	assert.Equal(t, "k1", k.ID)

	// A waiting caller gives up when its own deadline passes, with a denial, not a hang.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	s.mu.Lock()
	s.lastRefetch = time.Time{} // let this caller join the in-flight fetch
	s.mu.Unlock()
	_, err = s.Key(ctx2, "unknown-2")
	assert.ErrorIs(t, err, ErrUnknownKID)
}

func TestColdStartNotReadyThenReady(t *testing.T) {
	is := newIssuer(t)
	block := make(chan struct{})
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1"})}
		is.block = block
	})
	s := newSet(t, Options{Issuer: is.issuerURL()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	assert.False(t, s.Loaded())
	_, err := s.Key(context.Background(), "k1")
	assert.ErrorIs(t, err, ErrNotLoaded, "before the first load nothing can be verified")

	close(block)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	require.NoError(t, s.WaitLoaded(wctx))
	assert.True(t, s.Loaded())
	_, err = s.Key(context.Background(), "k1")
	assert.NoError(t, err)
	cancel()
	<-done
}

func TestRunRetriesUntilFirstLoad(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1"})}
		is.status = http.StatusServiceUnavailable
	})
	var outcomes []error
	var mu sync.Mutex
	succeeded, once := make(chan struct{}), sync.Once{}
	s := newSet(t, Options{Issuer: is.issuerURL(), OnFetch: func(_ Trigger, err error, _ int) {
		mu.Lock()
		defer mu.Unlock()
		outcomes = append(outcomes, err)
		if len(outcomes) == 1 {
			is.set(func(is *issuer) { is.status = 0 }) // the issuer recovers after one failure
		}
		if err == nil && len(outcomes) > 1 {
			once.Do(func() { close(succeeded) })
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	require.NoError(t, s.WaitLoaded(wctx))
	// OnFetch reports after the keys are in place, so the loaded signal can come first.
	select {
	case <-succeeded:
	case <-wctx.Done():
		t.Fatal("no successful fetch reported")
	}
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(outcomes), 2)
	assert.Error(t, outcomes[0])
	assert.NoError(t, outcomes[len(outcomes)-1])
}

func TestRefreshInterval(t *testing.T) {
	lo, hi, def := 5*time.Minute, 24*time.Hour, time.Hour
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", def},
		{"max-age=3600", time.Hour},
		{"public, max-age=7200, must-revalidate", 2 * time.Hour},
		{"max-age=10", lo},
		{"max-age=0", lo},
		{"max-age=99999999999", hi},
		{"no-cache", lo},
		{"no-store, max-age=3600", lo},
		{"max-age=abc", def},
		{"MAX-AGE=600", 10 * time.Minute},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, refreshInterval(tt.header, lo, hi, def), "Cache-Control %q", tt.header)
	}
}

func TestScheduledRefreshFollowsCacheControl(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1"})}
		is.cacheControl = "max-age=7200"
	})
	s := newSet(t, Options{Issuer: is.issuerURL()})
	require.NoError(t, s.Refresh(context.Background()))
	assert.Equal(t, 2*time.Hour, s.snap.Load().maxAge)
}

func TestBodyCapAndHTTPChecks(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"keys":["` + strings.Repeat("a", 2<<20) + `"]}`))
	}))
	defer big.Close()
	s := newSet(t, Options{JWKSURL: big.URL, MaxBodyBytes: 1 << 20})
	assert.ErrorContains(t, s.Refresh(context.Background()), "larger than")

	_, err := New(Options{Issuer: "http://idp.example/oauth2/default", Algs: []string{"RS256"}})
	assert.ErrorContains(t, err, "plain http")
	_, err = New(Options{Issuer: "https://idp.example", Algs: []string{"HS256"}})
	assert.ErrorContains(t, err, "unsupported algorithm")
}

func TestBackoffBounds(t *testing.T) {
	for n := range 20 {
		d := backoff(n)
		assert.Greater(t, d, time.Duration(0))
		assert.LessOrEqual(t, d, time.Minute)
	}
	assert.Less(t, backoff(0), 2*time.Second)
}

// TestConcurrentRotatedKidWaitsForTheRefetch: tokens with a freshly rotated kid that arrive
// while its refetch is in flight all wait for it and then verify, with one fetch between them
// (the soak test found the earlier behaviour, refusing them, after a rotation).
func TestConcurrentRotatedKidWaitsForTheRefetch(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "old"})}
	})
	s := newSet(t, Options{Issuer: is.issuerURL()})
	require.NoError(t, s.Refresh(context.Background()))
	before := is.keyFetches.Load()

	block := make(chan struct{})
	is.set(func(is *issuer) {
		is.keys = append(is.keys, jwkJSON(t, &rsaKey2.PublicKey, map[string]any{"kid": "new"}))
		is.block = block
	})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := s.Key(ctx, "new")
			errs <- err
		})
	}
	require.Eventually(t, func() bool { return is.keyFetches.Load() == before+1 }, 5*time.Second, time.Millisecond)
	close(block)
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, before+1, is.keyFetches.Load(), "one refetch served all of them")
}

func TestRetryWaitBeforeTheFirstLoad(t *testing.T) {
	for n := range 20 {
		assert.LessOrEqual(t, retryWait(n, false), startupBackoffMax, "unready: retry within %s", startupBackoffMax)
		assert.LessOrEqual(t, retryWait(n, true), time.Minute)
	}
	assert.Greater(t, retryWait(10, true), startupBackoffMax, "once loaded, a failing issuer is asked less often")
}

// TestUnusableKeysAreLoggedOnce: a set with thousands of unusable keys logs a few lines when
// it is new, and none on a refresh that finds the same set (it logged a line per key per fetch).
func TestUnusableKeysAreLoggedOnce(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "k1"})}
		for i := range 2000 { // small EC keys: thousands fit the 1 MiB limit
			is.keys = append(is.keys, map[string]any{"kty": "EC", "crv": "P-256", "kid": fmt.Sprintf("enc-%d", i), "use": "enc",
				"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
		}
	})
	var logs bytes.Buffer
	s := newSet(t, Options{Issuer: is.issuerURL(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, s.Refresh(context.Background()))
	first := strings.Count(logs.String(), "not used")
	assert.Equal(t, maxSkippedLogged+1, first, "a few keys by name, then a count")
	assert.Contains(t, logs.String(), "count=1995")
	require.NoError(t, s.Refresh(context.Background()))
	assert.Equal(t, first, strings.Count(logs.String(), "not used"), "the same set again: nothing more")
}

// TestRefetchThatCannotAnswerIsNotUnknown: during a rotation the issuer's key set is slow or
// failing; a kid the refetch could not look up is "not yet fetched" (the service answers 503
// with Retry-After), never unknown (401: the client would throw a valid token away). Only a
// refetch that succeeded without the kid says it is unknown.
func TestRefetchThatCannotAnswerIsNotUnknown(t *testing.T) {
	is := newIssuer(t)
	is.set(func(is *issuer) {
		is.keys = []map[string]any{jwkJSON(t, &rsaKey.PublicKey, map[string]any{"kid": "old"})}
	})
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	s := newSet(t, Options{Issuer: is.issuerURL(), Now: clk.Now, MinRefetch: 30 * time.Second})
	require.NoError(t, s.Refresh(context.Background()))

	is.set(func(is *issuer) { is.status = http.StatusInternalServerError })
	_, err := s.Key(context.Background(), "new")
	assert.ErrorIs(t, err, ErrKIDNotFetched, "a failed refetch")

	clk.Advance(31 * time.Second)
	block := make(chan struct{})
	is.set(func(is *issuer) { is.status, is.block = 0, block })
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the request cannot wait
	_, err = s.Key(ctx, "new")
	assert.ErrorIs(t, err, ErrKIDNotFetched, "a refetch the request could not wait for")
	close(block)

	clk.Advance(31 * time.Second)
	require.Eventually(t, func() bool {
		_, err := s.Key(context.Background(), "made-up")
		return errors.Is(err, ErrUnknownKID) && !errors.Is(err, ErrKIDNotFetched)
	}, 5*time.Second, 10*time.Millisecond, "a refetch that succeeded without the kid: unknown")
}
