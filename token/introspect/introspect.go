// Package introspect asks an authorization server whether an access token is active: OAuth 2.0
// Token Introspection (RFC 7662). It owns the call — client authentication (RFC 6749 §2.3,
// RFC 7523), a bounded HTTP client, a timeout — and what keeps it cheap and safe under load: a
// cache of results, one call per token however many requests carry it, a limit on calls in
// flight and a circuit breaker, so that a slow or dead endpoint costs no pile-up.
//
// Its callers are of two kinds. A token the caller verified itself (a JWT whose signature,
// issuer and audience held: IntrospectVerified) took a valid token to make; an opaque token
// (Introspect) is a string anyone can make up. Opaque tokens get at most half of the calls in
// flight (unless no verified token is introspected: Config.OpaqueInFlight) and a breaker of
// their own, so a flood of made-up tokens — each a new call, each perhaps a 429 — cannot
// starve or trip the calls for verified tokens.
//
// It judges the response's shape only (Result): whether the token is valid for a resource is
// the caller's to decide from the members, exactly as for a JWT's claims. The response is
// untrusted input until then: read by exact member names, bounded in size, and only a JSON
// true in "active" means active. An endpoint that cannot answer — down, slow, rate-limiting,
// refusing the service's credentials, or answering what is not a JSON object — is
// ErrUnavailable, never "inactive": the caller answers 503, not 401.
package introspect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/platformauth/envoy-okta-authz/internal/strictjson"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultCacheTTL    = 60 * time.Second
	DefaultNegativeTTL = 10 * time.Second
	DefaultCacheSize   = 10_000
	// DefaultNegativeSize bounds remembered inactive tokens: a flood of random ones becomes
	// at most one call each per DefaultNegativeTTL, and never more memory than this.
	DefaultNegativeSize = 10_000
	DefaultMaxInFlight  = 64
	// MaxResponseBytes caps a response body.
	MaxResponseBytes = 64 << 10
	// MaxCachedBytes caps the body of an answer the cache keeps (the cache holds at most
	// CacheSize × MaxCachedBytes of bodies: 160 MiB at the defaults). Larger answers are used
	// once and asked for again.
	MaxCachedBytes = 16 << 10
	// breakerThreshold consecutive failures open the breaker for breakerCooldown (doubling up to
	// breakerMaxCooldown while the endpoint keeps failing).
	breakerThreshold   = 5
	breakerCooldown    = time.Second
	breakerMaxCooldown = 30 * time.Second
)

// ErrUnavailable wraps every failure to get an answer. The token's state is unknown.
var ErrUnavailable = errors.New("introspection unavailable")

// Config configures a Client.
type Config struct {
	// Endpoint is the introspection URL; when empty, Discover names it (the issuer's metadata,
	// which may not be read yet: calls fail as unavailable until it is).
	Endpoint string
	Discover func() string
	// Auth is how the service authenticates (default ClientSecretBasic).
	Auth Auth
	// ClientID is the service's client at the authorization server.
	ClientID string
	// Secret is the client secret (client_secret_basic, _post, _jwt).
	Secret string
	// Key signs private_key_jwt assertions.
	Key *SigningKey
	// Timeout bounds one call (default DefaultTimeout).
	Timeout time.Duration
	// CacheTTL bounds how long an active result is reused — never past the token's exp: the
	// window in which a revoked token still passes (default DefaultCacheTTL; negative: no
	// cache). NegativeTTL is the same for inactive results (default DefaultNegativeTTL).
	CacheTTL, NegativeTTL time.Duration
	// CacheSize and NegativeSize bound the two caches (defaults DefaultCacheSize and
	// DefaultNegativeSize).
	CacheSize, NegativeSize int
	// MaxInFlight bounds concurrent calls; a call beyond it fails at once (default
	// DefaultMaxInFlight). OpaqueInFlight bounds those for opaque tokens (default half of
	// MaxInFlight, the other half kept for verified tokens; MaxInFlight when no verified token
	// is ever introspected).
	MaxInFlight, OpaqueInFlight int

	HTTPClient *http.Client
	Now        func() time.Time
	Logger     *slog.Logger
	// OnCall, when set, hears each call's outcome ("active", "inactive", "error") and duration,
	// or "shed" (zero duration) for a call not made: the breaker open or the in-flight limit
	// reached. OnCache hears each lookup ("hit", "miss"). For metrics.
	OnCall  func(result string, d time.Duration)
	OnCache func(result string)
}

// Result is an answer the endpoint gave.
type Result struct {
	// Active is true only for a response whose "active" member is the JSON value true.
	Active bool
	// Body is the response's JSON object as received (for an active token: its claims).
	Body []byte
	// Members are the response's members by exact name, raw (only when Active).
	Members map[string][]byte
	// Expiry is the exp member, zero when absent.
	Expiry time.Time
	// Memo holds what the caller derives from this result once (package token: its Claims),
	// for as long as the result is cached.
	Memo atomic.Value
}

// Client calls one introspection endpoint. It is safe for concurrent use.
type Client struct {
	cfg    Config
	http   *http.Client
	log    *slog.Logger
	active *lru.Cache[[32]byte, cached]
	// inactive holds tokens the endpoint called inactive, until their entry expires.
	inactive *lru.Cache[[32]byte, time.Time]
	flight   singleflight.Group
	// slots bounds every call in flight; opaque the calls for opaque tokens, which must also
	// hold one of slots. Each kind of caller has its breaker.
	slots   chan struct{}
	opaque  caller
	checked caller
}

// caller is what one kind of token has of its own: a breaker, and for opaque tokens a share of
// the call slots.
type caller struct {
	kind    string
	slots   chan struct{} // nil: only the client's slots bound it
	breaker breaker
}

type cached struct {
	result  *Result
	expires time.Time
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Endpoint == "" && cfg.Discover == nil:
		return nil, errors.New("introspect: an endpoint is required")
	case cfg.Endpoint != "":
		if err := CheckEndpoint(cfg.Endpoint); err != nil {
			return nil, err
		}
	}
	if cfg.Auth == "" {
		cfg.Auth = ClientSecretBasic
	}
	if err := cfg.Auth.check(cfg); err != nil {
		return nil, err
	}
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.CacheTTL, DefaultCacheTTL)
	setDefault(&cfg.NegativeTTL, DefaultNegativeTTL)
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.NegativeSize <= 0 {
		cfg.NegativeSize = DefaultNegativeSize
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.OpaqueInFlight <= 0 || cfg.OpaqueInFlight > cfg.MaxInFlight {
		cfg.OpaqueInFlight = max(cfg.MaxInFlight/2, 1)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger.With("component", "introspect"),
		slots:   make(chan struct{}, cfg.MaxInFlight),
		opaque:  caller{kind: "opaque", slots: make(chan struct{}, cfg.OpaqueInFlight)},
		checked: caller{kind: "verified"}}
	if c.http == nil {
		// A transport of its own that keeps a connection for each call that may be in flight:
		// the default keeps two per host, so under load most calls would dial (and, against
		// Okta, shake hands) anew.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = cfg.MaxInFlight, cfg.MaxInFlight
		c.http = &http.Client{Timeout: cfg.Timeout, Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is not an answer: the token must not follow it elsewhere
		}}
	}
	c.active, _ = lru.New[[32]byte, cached](cfg.CacheSize) // sizes are positive: cannot fail
	c.inactive, _ = lru.New[[32]byte, time.Time](cfg.NegativeSize)
	return c, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Introspect returns the endpoint's answer for an opaque token: from the cache while it is
// fresh, otherwise from one call shared by every concurrent request with the same token. A
// failure wraps ErrUnavailable and is never cached.
func (c *Client) Introspect(ctx context.Context, token string) (*Result, error) {
	return c.introspect(ctx, token, &c.opaque)
}

// IntrospectVerified is Introspect for a token whose signature, issuer and audience the caller
// verified: its calls do not compete with those for opaque tokens.
func (c *Client) IntrospectVerified(ctx context.Context, token string) (*Result, error) {
	return c.introspect(ctx, token, &c.checked)
}

func (c *Client) introspect(ctx context.Context, token string, who *caller) (*Result, error) {
	key := sha256.Sum256([]byte(token))
	now := c.cfg.Now()
	if e, ok := c.active.Get(key); ok {
		if now.Before(e.expires) {
			c.observeCache("hit")
			return e.result, nil
		}
		c.active.Remove(key)
	}
	if until, ok := c.inactive.Get(key); ok {
		if now.Before(until) {
			c.observeCache("hit")
			return &Result{}, nil
		}
		c.inactive.Remove(key)
	}
	c.observeCache("miss")
	ch := c.flight.DoChan(string(key[:]), func() (any, error) {
		// The call outlives a request that gives up waiting: the others may still want it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		defer cancel()
		r, err := c.call(cctx, token, who)
		if err != nil {
			return nil, err
		}
		c.remember(key, r)
		return r, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Result), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

func (c *Client) observeCache(result string) {
	if c.cfg.OnCache != nil {
		c.cfg.OnCache(result)
	}
}

// remember caches a result: an active one until min(exp, now + CacheTTL), an inactive one for
// NegativeTTL.
func (c *Client) remember(key [32]byte, r *Result) {
	now := c.cfg.Now()
	if !r.Active {
		if c.cfg.NegativeTTL > 0 {
			c.inactive.Add(key, now.Add(c.cfg.NegativeTTL))
		}
		return
	}
	if c.cfg.CacheTTL <= 0 || len(r.Body) > MaxCachedBytes {
		return
	}
	until := now.Add(c.cfg.CacheTTL)
	if !r.Expiry.IsZero() && r.Expiry.Before(until) {
		until = r.Expiry
	}
	if now.Before(until) {
		c.active.Add(key, cached{result: r, expires: until})
	}
}

// Forget drops what the cache holds for token (a refused cached result must be asked again).
func (c *Client) Forget(token string) {
	key := sha256.Sum256([]byte(token))
	c.active.Remove(key)
	c.inactive.Remove(key)
}

// call asks the endpoint, within the in-flight limits and the caller's breaker.
func (c *Client) call(ctx context.Context, token string, who *caller) (r *Result, err error) {
	shed := func(err error) (*Result, error) {
		if c.cfg.OnCall != nil {
			c.cfg.OnCall("shed", 0)
		}
		return nil, err
	}
	if !who.breaker.allow(c.cfg.Now()) {
		return shed(fmt.Errorf("%w: the endpoint failed repeatedly for %s tokens; not asked again before %s", ErrUnavailable,
			who.kind, who.breaker.openUntil().Format(time.RFC3339)))
	}
	if who.slots != nil {
		select {
		case who.slots <- struct{}{}:
			defer func() { <-who.slots }()
		default:
			return shed(fmt.Errorf("%w: %d calls for %s tokens in flight already", ErrUnavailable, cap(who.slots), who.kind))
		}
	}
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	default:
		return shed(fmt.Errorf("%w: %d calls in flight already", ErrUnavailable, c.cfg.MaxInFlight))
	}
	start := time.Now()
	defer func() {
		result := "error"
		switch {
		case err == nil && r.Active:
			result = "active"
		case err == nil:
			result = "inactive"
		}
		if c.cfg.OnCall != nil {
			c.cfg.OnCall(result, time.Since(start))
		}
		if who.breaker.record(err == nil, c.cfg.Now()) {
			c.log.Warn("introspection paused: the endpoint failed repeatedly; calls are shed until a probe succeeds",
				"tokens", who.kind, "until", who.breaker.openUntil())
		}
		if err != nil {
			c.log.Warn("introspection failed", "error", err.Error())
		}
	}()
	endpoint := c.cfg.Endpoint
	if endpoint == "" {
		if endpoint = c.cfg.Discover(); endpoint == "" {
			return nil, fmt.Errorf("%w: the issuer's metadata names no introspection_endpoint (or is not read yet): set the introspection URL", ErrUnavailable)
		}
	}
	req, err := c.request(ctx, endpoint, token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, redact(err, token))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: reading the response: %v", ErrUnavailable, err)
	case resp.StatusCode != http.StatusOK:
		// 429 (Okta's rate limit), 5xx, and 401/403 (the service's own credentials refused):
		// none says anything about the token.
		return nil, fmt.Errorf("%w: the endpoint answered %s", ErrUnavailable, resp.Status)
	case len(body) > MaxResponseBytes:
		return nil, fmt.Errorf("%w: a response larger than %d bytes", ErrUnavailable, MaxResponseBytes)
	}
	return parse(body)
}

// request builds the POST of RFC 7662 §2.1 with the client authentication.
func (c *Client) request(ctx context.Context, endpoint, token string) (*http.Request, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	basic, err := c.cfg.Auth.apply(form, c.cfg, endpoint, c.cfg.Now())
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(c.cfg.Secret))
	}
	return req, nil
}

// CheckEndpoint says whether u can be an introspection endpoint: an absolute http(s) URL without
// user info or fragment.
func CheckEndpoint(u string) error {
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return errors.New("introspect: the endpoint is not a URL") // url's error quotes it, credentials and all
	case p.User != nil:
		p.User = nil
		return fmt.Errorf("introspect: endpoint %q must not hold credentials (user info): the client authentication carries them", p.Redacted())
	case (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.Fragment != "":
		return fmt.Errorf("introspect: endpoint %q must be an absolute http(s) URL", u)
	}
	return nil
}

// redact removes the token from an error that may quote the request (it never should; a
// transport's message is not ours to trust).
func redact(err error, token string) string {
	return strings.ReplaceAll(err.Error(), token, "[token]")
}

// parse reads a 200 response: a JSON object whose member names are unambiguous; "active"
// must be the JSON value true for the token to be active.
func parse(body []byte) (*Result, error) {
	members := map[string][]byte{}
	err := strictjson.Object(body, func(name, value []byte) error {
		members[string(name)] = value
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: the response is not an unambiguous JSON object: %v", ErrUnavailable, err)
	}
	if !bytes.Equal(members["active"], []byte("true")) {
		return &Result{}, nil
	}
	r := &Result{Active: true, Body: body, Members: members}
	if raw, ok := members["exp"]; ok {
		if r.Expiry, err = NumericDate(raw); err != nil {
			// An active answer whose expiry cannot be read is not one to act on.
			return nil, fmt.Errorf("%w: exp: %v", ErrUnavailable, err)
		}
	}
	return r, nil
}

// NumericDate reads a JSON NumericDate (seconds since the epoch, possibly fractional); null is
// the zero time.
func NumericDate(raw []byte) (time.Time, error) {
	if string(raw) == "null" {
		return time.Time{}, nil
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return time.Time{}, errors.New("want a number")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, errors.New("want a plausible number of seconds")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// breaker stops calls to an endpoint that keeps failing, for a cooldown that doubles while it
// fails: a dead endpoint then costs one probe per cooldown, not one call (and a timeout) per
// request.
type breaker struct {
	mu       sync.Mutex // guards the fields below
	failures int
	until    time.Time // open until then
	cooldown time.Duration
	probing  atomic.Bool
}

// allow reports whether a call may go: the breaker is closed, or its cooldown is over and no
// other probe is out.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < breakerThreshold {
		return true
	}
	if now.Before(b.until) {
		return false
	}
	return b.probing.CompareAndSwap(false, true) // half-open: one call tries
}

// record notes a call's outcome, and reports whether the breaker opened because of it (it was
// closed before).
func (b *breaker) record(ok bool, now time.Time) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing.Store(false)
	if ok {
		b.failures, b.cooldown = 0, 0
		return false
	}
	b.failures++
	if b.failures >= breakerThreshold {
		b.cooldown = min(max(2*b.cooldown, breakerCooldown), breakerMaxCooldown)
		b.until = now.Add(b.cooldown)
	}
	return b.failures == breakerThreshold
}

func (b *breaker) openUntil() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.until
}
