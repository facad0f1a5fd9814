package authzcmd

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
	"github.com/platformauth/envoy-okta-authz/token/introspect"
)

// secretEnv holds --issuer's introspection client secret, for those who would rather not write
// it to a file. It is read once and never printed.
const secretEnv = "AUTHZ_INTROSPECTION_CLIENT_SECRET"

// introspectionFlags adds --introspection* (for --issuer) to fs, into spec.
func introspectionFlags(fs *flag.FlagSet, spec *policy.IntrospectionSpec, cacheTTL, timeout *time.Duration) {
	fs.StringVar(&spec.Mode, "introspection", string(token.IntrospectOff), "token introspection (RFC 7662) for --issuer: off; opaque (tokens that are not JWTs go to the issuer's introspection endpoint); always (every JWT too, after local verification: revoked tokens are refused within --introspection-cache-ttl)")
	fs.StringVar(&spec.URL, "introspection-url", "", "introspection endpoint (default: introspection_endpoint from the issuer's metadata)")
	fs.StringVar(&spec.Auth, "introspection-auth", string(introspect.ClientSecretBasic), "how the service authenticates to the endpoint: client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, none")
	fs.StringVar(&spec.ClientID, "introspection-client-id", "", "the service's client id at the issuer")
	fs.StringVar(&spec.ClientSecretFile, "introspection-client-secret-file", "", "file holding the client secret (or set "+secretEnv+")")
	fs.StringVar(&spec.KeyFile, "introspection-key-file", "", "private_key_jwt: the client's private key, a JWK (its kid and alg are used) or PEM file")
	fs.DurationVar(cacheTTL, "introspection-cache-ttl", introspect.DefaultCacheTTL, "how long an active answer is reused (never past the token's exp): the window in which a revoked token still passes")
	fs.DurationVar(timeout, "introspection-timeout", introspect.DefaultTimeout, "bounds one introspection call")
	fs.IntVar(&spec.CacheSize, "introspection-cache-size", introspect.DefaultCacheSize, "active answers kept in memory (by the token's SHA-256), at most 16 KiB each: size it to the tokens in use within the TTL")
}

// introspectionMetrics count introspection calls, their latency and cache hits, by issuer.
type introspectionMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	cache    *prometheus.CounterVec
}

func newIntrospectionMetrics(reg prometheus.Registerer) *introspectionMetrics {
	m := &introspectionMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authz_introspection_calls_total",
			Help: "Calls to the issuer's introspection endpoint, by issuer and result (active, inactive, error; shed: not made, the breaker open or the in-flight limit reached)."}, []string{"issuer", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "authz_introspection_duration_seconds",
			Help: "Time of an introspection call, by issuer.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"issuer"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authz_introspection_cache_total",
			Help: "Introspection lookups, by issuer and whether the cache answered (hit, miss)."}, []string{"issuer", "result"}),
	}
	reg.MustRegister(m.calls, m.duration, m.cache)
	return m
}

// buildIntrospection makes an issuer's introspection client (nil when off): the endpoint
// configured, or the one keys discovers from the issuer's metadata.
func buildIntrospection(name string, spec *policy.IntrospectionSpec, keys *jwks.Set, log *slog.Logger, m *introspectionMetrics) (*token.Introspection, error) {
	if spec == nil || spec.Mode == "" || spec.Mode == string(token.IntrospectOff) {
		return nil, nil
	}
	cfg := introspect.Config{Endpoint: spec.URL, Auth: introspect.ClientSecretBasic, ClientID: spec.ClientID,
		Secret: spec.ClientSecret, Timeout: time.Duration(spec.Timeout), CacheTTL: time.Duration(spec.CacheTTL),
		CacheSize: spec.CacheSize, Logger: log.With("issuer", name)}
	if spec.Auth != "" {
		cfg.Auth = introspect.Auth(spec.Auth)
	}
	if spec.Mode == string(token.IntrospectOpaque) {
		// No JWT is introspected: opaque tokens may have every call slot.
		cfg.MaxInFlight, cfg.OpaqueInFlight = introspect.DefaultMaxInFlight, introspect.DefaultMaxInFlight
	}
	if cfg.Endpoint == "" {
		cfg.Discover = keys.IntrospectionEndpoint
	}
	if spec.ClientSecretFile != "" {
		b, err := os.ReadFile(spec.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("introspection client secret: %w", err)
		}
		cfg.Secret = strings.TrimSpace(string(b))
	}
	if spec.KeyFile != "" {
		k, err := introspect.LoadKey(spec.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Key = k
	}
	if m != nil {
		cfg.OnCall = func(result string, d time.Duration) {
			m.calls.WithLabelValues(name, result).Inc()
			if result != "shed" {
				m.duration.WithLabelValues(name).Observe(d.Seconds())
			}
		}
		hit, miss := m.cache.WithLabelValues(name, "hit"), m.cache.WithLabelValues(name, "miss")
		cfg.OnCache = func(result string) {
			if result == "hit" {
				hit.Inc()
			} else {
				miss.Inc()
			}
		}
	}
	client, err := introspect.New(cfg)
	if err != nil {
		return nil, err
	}
	return &token.Introspection{Mode: token.IntrospectionMode(spec.Mode), Client: client}, nil
}
