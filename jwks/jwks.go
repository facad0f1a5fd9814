// Package jwks owns the issuer's signing keys: discovery of the key set URL from the issuer's
// metadata, fetching the set with a bounded HTTP client, an in-memory snapshot that readers never
// wait on, background refresh that honours Cache-Control within bounds, and single-flight,
// rate-limited refetches when a token names a key id the snapshot does not know.
//
// It is the only package that talks to the issuer.
package jwks

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Errors a key lookup returns; the decision layer maps them to 503 and 401.
var (
	// ErrNotLoaded means no key set has been loaded yet: the service cannot verify anything.
	ErrNotLoaded = errors.New("jwks: no key set loaded yet")
	// ErrUnknownKID means the key set (after any permitted refetch) has no key with that id.
	ErrUnknownKID = errors.New("jwks: unknown key id")
	// ErrKIDNotFetched means the key set has no key with that id and may not be fetched again
	// yet (an unknown kid refetched it less than MinRefetch ago): the key may be one the issuer
	// published since. A caller that cannot tell otherwise should answer "retry later", not
	// "invalid": a forged kid that spent the refetch must not make a freshly rotated key's
	// tokens look invalid. It wraps ErrUnknownKID.
	ErrKIDNotFetched = fmt.Errorf("%w, and the key set may not be fetched again yet", ErrUnknownKID)
)

// Trigger says why a fetch happened, for logs and metrics.
type Trigger string

// The reasons a key set is fetched.
const (
	TriggerStartup    Trigger = "startup"
	TriggerSchedule   Trigger = "schedule"
	TriggerUnknownKID Trigger = "unknown_kid"
)

// Defaults for Options' zero values.
const (
	DefaultMinRefresh     = 5 * time.Minute
	DefaultMaxRefresh     = 24 * time.Hour
	DefaultRefresh        = time.Hour
	DefaultMinRefetch     = 30 * time.Second
	DefaultMaxBodyBytes   = 1 << 20
	DefaultFetchTimeout   = 10 * time.Second
	defaultBackoffInitial = time.Second
	defaultBackoffMax     = time.Minute
	// startupBackoffMax caps the wait between attempts before the first key set is loaded: the
	// replica is unready until then, and must not stay so a minute after the issuer is back.
	startupBackoffMax = 5 * time.Second
	// maxSkippedLogged bounds the lines logged about unusable keys of one set.
	maxSkippedLogged = 5
)

// Options configure a Set. Zero values take the defaults above.
type Options struct {
	// Issuer is the configured issuer URL. Discovery reads its metadata, whose "issuer" must
	// equal it (a trailing slash aside).
	Issuer string
	// JWKSURL, when set, is fetched directly and discovery is skipped.
	JWKSURL string
	// Algs is the allowlist of signature algorithms; keys usable with none of them are dropped.
	Algs []string
	// AllowHTTP permits plain-http issuer and key URLs (local stacks only).
	AllowHTTP bool

	// MinRefresh and MaxRefresh bound the refresh interval taken from Cache-Control;
	// DefaultRefresh applies when the response has no max-age.
	MinRefresh, MaxRefresh, DefaultRefresh time.Duration
	// MinRefetch is the least time between two refetches caused by unknown key ids.
	MinRefetch time.Duration
	// FetchTimeout bounds one discovery-plus-fetch round.
	FetchTimeout time.Duration
	// MaxBodyBytes caps a metadata or key set response.
	MaxBodyBytes int64

	// HTTPClient overrides the bounded default client (tests, custom CAs).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
	// OnFetch, when set, is told the outcome of every fetch (for metrics).
	OnFetch func(trigger Trigger, err error, keys int)
}

// Set is the issuer's key set as this process knows it. It is safe for concurrent use.
type Set struct {
	opts   Options
	client *http.Client
	log    *slog.Logger

	snap     atomic.Pointer[snapshot]
	loaded   chan struct{} // closed when the first key set is stored
	loadOnce sync.Once

	flight singleflight.Group

	mu          sync.Mutex // guards lastRefetch, refetching, jwksURL, issuerID and introspection
	lastRefetch time.Time  // last fetch caused by an unknown kid
	refetching  *refetch   // the unknown-kid refetch in flight; nil if none
	jwksURL     string     // discovered or configured key set URL
	issuerID    string     // the issuer identifier the metadata declared; empty before discovery
	// introspection is the metadata's introspection_endpoint, empty before discovery or
	// without one.
	introspection string
}

// metadata is what discovery reads of the issuer's metadata (RFC 8414).
type metadata struct {
	Issuer        string `json:"issuer"`
	JWKSURI       string `json:"jwks_uri"`
	Introspection string `json:"introspection_endpoint"`
}

// snapshot is one immutable, fully parsed key set.
type snapshot struct {
	keys      map[string]Key
	fetchedAt time.Time
	maxAge    time.Duration // refresh interval derived from Cache-Control
}

// New validates the options and returns a Set with no keys loaded; call Run to load them.
func New(opts Options) (*Set, error) {
	if opts.Issuer == "" && opts.JWKSURL == "" {
		return nil, errors.New("jwks: an issuer or a key set URL is required")
	}
	if len(opts.Algs) == 0 {
		return nil, errors.New("jwks: at least one allowed algorithm is required")
	}
	for _, a := range opts.Algs {
		if !SupportedAlg(a) {
			return nil, fmt.Errorf("jwks: unsupported algorithm %q", a)
		}
	}
	for _, u := range []string{opts.Issuer, opts.JWKSURL} {
		if u != "" {
			if err := checkURL(u, opts.AllowHTTP); err != nil {
				return nil, err
			}
		}
	}
	setDefault(&opts.MinRefresh, DefaultMinRefresh)
	setDefault(&opts.MaxRefresh, DefaultMaxRefresh)
	setDefault(&opts.DefaultRefresh, DefaultRefresh)
	setDefault(&opts.MinRefetch, DefaultMinRefetch)
	setDefault(&opts.FetchTimeout, DefaultFetchTimeout)
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MinRefresh > opts.MaxRefresh {
		return nil, fmt.Errorf("jwks: min refresh %s exceeds max refresh %s", opts.MinRefresh, opts.MaxRefresh)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Set{
		opts:    opts,
		client:  opts.HTTPClient,
		log:     opts.Logger.With("component", "jwks"),
		loaded:  make(chan struct{}),
		jwksURL: opts.JWKSURL,
	}
	if s.client == nil {
		s.client = newHTTPClient(opts.AllowHTTP)
	}
	return s, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Key returns the key with the given id. It never waits for the issuer when the key is known.
// For an unknown id it triggers at most one refetch per MinRefetch (shared by all callers) and
// waits for it no longer than ctx allows.
func (s *Set) Key(ctx context.Context, kid string) (Key, error) {
	snap := s.snap.Load()
	if snap == nil {
		return Key{}, ErrNotLoaded
	}
	if k, ok := snap.keys[kid]; ok {
		return k, nil
	}
	r, start := s.claimRefetch()
	if r == nil {
		return Key{}, ErrKIDNotFetched // rate-limited, and no refetch in flight to wait for
	}
	if start {
		// The refetch outlives the request that triggered it: other callers wait for it.
		// (refresh bounds the fetch by FetchTimeout.)
		go func() {
			r.err = s.refresh(context.Background(), TriggerUnknownKID)
			s.mu.Lock()
			s.refetching = nil
			s.mu.Unlock()
			close(r.done) // after r.err: a waiter reads it once done is closed
		}()
	}
	// Only a refetch that succeeded and lacks the kid says it is unknown; one that failed, or
	// that this request could not wait for, leaves it not yet fetched (a rotation must not
	// make a new key's tokens invalid while the issuer is slow).
	select {
	case <-r.done:
	case <-ctx.Done():
		return Key{}, ErrKIDNotFetched
	}
	if k, ok := s.snap.Load().keys[kid]; ok {
		return k, nil
	}
	if r.err != nil {
		return Key{}, ErrKIDNotFetched
	}
	return Key{}, ErrUnknownKID
}

// refetch is one unknown-kid refetch: done is closed when it ends, err then says how.
type refetch struct {
	done chan struct{}
	err  error
}

// claimRefetch decides what a lookup of an unknown kid does: join the refetch in flight, start
// one (start is true) when none ran within MinRefetch, or give up (nil).
// So a burst of tokens with made-up kids costs the issuer at most one request per MinRefetch,
// and tokens with a freshly rotated kid that arrive during its refetch all wait for it.
func (s *Set) claimRefetch() (r *refetch, start bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refetching != nil {
		return s.refetching, false
	}
	now := s.opts.Now()
	if !s.lastRefetch.IsZero() && now.Sub(s.lastRefetch) < s.opts.MinRefetch {
		return nil, false
	}
	s.lastRefetch = now
	s.refetching = &refetch{done: make(chan struct{})}
	return s.refetching, true
}

// KeyFingerprint returns the fingerprint of the current key with id kid, without any fetch;
// ok is false when the set holds no such key.
func (s *Set) KeyFingerprint(kid string) (fp [32]byte, ok bool) {
	snap := s.snap.Load()
	if snap == nil {
		return fp, false
	}
	k, ok := snap.keys[kid]
	return k.Fingerprint, ok
}

// Loaded reports whether a key set has been loaded (the service is ready).
func (s *Set) Loaded() bool { return s.snap.Load() != nil }

// WaitLoaded blocks until the first key set is loaded or ctx ends.
func (s *Set) WaitLoaded(ctx context.Context) error {
	select {
	case <-s.loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// KeyIDs returns the ids of the keys currently held, sorted.
func (s *Set) KeyIDs() []string {
	snap := s.snap.Load()
	if snap == nil {
		return nil
	}
	ids := make([]string, 0, len(snap.keys))
	for id := range snap.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// FetchedAt returns when the current key set was fetched (zero before the first load).
func (s *Set) FetchedAt() time.Time {
	if snap := s.snap.Load(); snap != nil {
		return snap.fetchedAt
	}
	return time.Time{}
}

// Refresh fetches the key set now (sharing a fetch already in progress).
func (s *Set) Refresh(ctx context.Context) error {
	return s.refresh(ctx, TriggerSchedule)
}

func (s *Set) refresh(ctx context.Context, trigger Trigger) error {
	ch := s.flight.DoChan("fetch", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.FetchTimeout)
		defer cancel()
		return nil, s.fetch(fctx, trigger)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run loads the key set and keeps it fresh until ctx ends. Before the first success it retries
// with backoff; afterwards it refreshes on the interval the issuer's Cache-Control allows
// (clamped), and on failure keeps the last good set and retries with backoff.
func (s *Set) Run(ctx context.Context) {
	failures := 0
	trigger := TriggerStartup
	for {
		err := s.refresh(ctx, trigger)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if err != nil {
			wait = retryWait(failures, s.Loaded())
			failures++
			if s.Loaded() {
				s.log.Warn("key set refresh failed; keeping the last good set", "error", err, "retry_in", wait.String())
			} else {
				s.log.Warn("key set not loaded yet; checks answer 503 until it is", "error", err, "retry_in", wait.String())
			}
		} else {
			failures = 0
			wait = s.snap.Load().maxAge
		}
		if s.Loaded() {
			trigger = TriggerSchedule
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// retryWait is the wait after n consecutive failures: backoff, capped at startupBackoffMax
// while no key set is loaded yet.
func retryWait(n int, loaded bool) time.Duration {
	d := backoff(n)
	if !loaded {
		d = min(d, startupBackoffMax)
	}
	return d
}

// backoff returns the wait after n consecutive failures: exponential from one second to a minute,
// with up to 20% jitter so that replicas do not retry in step.
func backoff(n int) time.Duration {
	d := defaultBackoffInitial << min(n, 10)
	d = min(d, defaultBackoffMax)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// fetch discovers the key set URL when needed, fetches and parses the set, and stores it.
// A failure leaves the current snapshot untouched.
func (s *Set) fetch(ctx context.Context, trigger Trigger) (err error) {
	nkeys := 0
	defer func() {
		if s.opts.OnFetch != nil {
			s.opts.OnFetch(trigger, err, nkeys)
		}
	}()
	u, err := s.keySetURL(ctx)
	if err != nil {
		return err
	}
	body, header, err := s.get(ctx, u)
	if err != nil {
		return err
	}
	keys, skipped, err := parseKeySet(body, s.opts.Algs)
	if err != nil {
		return fmt.Errorf("jwks: key set %s: %w", u, err)
	}
	for id, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k.Public)
		if err != nil {
			delete(keys, id) // every key type parseKeySet keeps encodes; fail closed if not
			continue
		}
		k.Fingerprint = sha256.Sum256(der)
		keys[id] = k
	}
	nkeys = len(keys)
	snap := &snapshot{
		keys:      keys,
		fetchedAt: s.opts.Now(),
		maxAge:    refreshInterval(header.Get("Cache-Control"), s.opts.MinRefresh, s.opts.MaxRefresh, s.opts.DefaultRefresh),
	}
	old := s.snap.Swap(snap)
	s.loadOnce.Do(func() { close(s.loaded) })
	if old == nil || !sameKeys(old.keys, keys) {
		// Unusable keys are told once per new set, a few by name: a set of thousands of them
		// must not write thousands of lines on every refresh.
		for i, sk := range skipped {
			if i == maxSkippedLogged {
				s.log.Info("key set: more keys not used", "count", len(skipped)-i)
				break
			}
			s.log.Info("key set: key not used", "kid", sk.kid, "reason", sk.reason)
		}
		s.log.Info("key set loaded", "trigger", string(trigger), "url", u, "kids", strings.Join(s.KeyIDs(), ","),
			"refresh_in", snap.maxAge.String())
	}
	return nil
}

// keySetURL returns the configured or discovered key set URL, discovering it on first use.
func (s *Set) keySetURL(ctx context.Context) (string, error) {
	s.mu.Lock()
	u := s.jwksURL
	s.mu.Unlock()
	if u != "" {
		return u, nil
	}
	md, err := s.discover(ctx)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.jwksURL, s.issuerID, s.introspection = md.JWKSURI, md.Issuer, md.Introspection
	s.mu.Unlock()
	return md.JWKSURI, nil
}

// IntrospectionEndpoint is the introspection_endpoint the issuer's metadata declared (RFC 8414),
// "" before discovery, without one, or with --jwks-url (no discovery).
func (s *Set) IntrospectionEndpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.introspection
}

// IssuerID is the issuer identifier tokens' iss must equal exactly (RFC 9068 §4): the one the
// issuer's metadata declared, which may differ from the configured issuer by a trailing slash.
// Without discovery (a configured key set URL), it is the configured issuer.
func (s *Set) IssuerID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.issuerID != "" {
		return s.issuerID
	}
	return s.opts.Issuer
}

func sameKeys(a, b map[string]Key) bool {
	if len(a) != len(b) {
		return false
	}
	for id, k := range a {
		if other, ok := b[id]; !ok || other.Fingerprint != k.Fingerprint {
			return false
		}
	}
	return true
}
