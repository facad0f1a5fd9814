package authzcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/platformauth/envoy-okta-authz/authz"
	demopolicy "github.com/platformauth/envoy-okta-authz/deploy/policy"
	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/httpapi"
	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/internal/keyalg"
	"github.com/platformauth/envoy-okta-authz/jwks"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// config is every setting of the service, parsed and validated once in main.
type config struct {
	Issuer          string
	Audiences       []string
	ClientIDs       []string
	JWKSURL         string
	Algs            []string
	Leeway          time.Duration
	GRPCAddr        string
	HTTPAddr        string
	AdminAddr       string
	AllowHTTPIssuer bool
	Policy          string
	// PolicyRules is the parsed --policy file (nil without one); policyDigest is the SHA-256
	// of the content it was parsed from, so the watcher notices any later change.
	PolicyRules    *policy.Policy
	policyDigest   []byte
	Realm          string
	LogLevel       slog.Level
	HTTPPathPrefix string
	// HTTPSource names the proxy whose headers say which request the HTTP decision API judges.
	HTTPSource   httpapi.RequestSource
	RequireATJWT bool
	// Introspection is --issuer's (--introspection*, and the secret from secretEnv).
	Introspection *policy.IntrospectionSpec
	// DPoP (RFC 9449): accepted proof algorithms (none: the DPoP scheme is off), how old a
	// proof may be, where proofs are remembered ("memory" or a Redis URL), how long a check
	// waits for Redis, what a Redis outage means ("deny" or "local"), and how many proofs
	// memory holds.
	DPoPAlgs          []string
	DPoPMaxAge        time.Duration
	DPoPReplayStore   string
	DPoPStoreTimeout  time.Duration
	DPoPStoreFailure  string
	DPoPReplayEntries int
	// PublicURL is the external origin clients use (a DPoP proof's htu names it).
	PublicURL string
	// ClientCertHeader names the HTTP API's header carrying the mTLS client certificate.
	ClientCertHeader string
	// Identity is what allows forward, as the flags say; the policy file's identity sections
	// go over it.
	Identity  policy.Identity
	CacheSize int
	// Limits protects the listeners (see limits.go); ShutdownDrain is how long the service
	// keeps serving after SIGTERM with readiness and gRPC health NOT_SERVING, ShutdownTimeout
	// how long it then waits for checks in flight.
	Limits                         limits
	ShutdownDrain, ShutdownTimeout time.Duration
	Pprof                          bool
	DecisionLog                    string
	LogSample                      float64
	TLSCert                        string
	TLSKey                         string
	ClientCA                       string

	Dev         bool
	DevAddr     string
	DevKey      string
	CheckConfig bool

	// Warnings are worth telling the operator but do not stop the service.
	Warnings []string
	// devExternal: --dev with --issuer, a dev issuer running elsewhere; nothing is started.
	devExternal bool
}

// envName is a flag's environment twin: --jwks-url → AUTHZ_JWKS_URL.
func envName(flagName string) string {
	return "AUTHZ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads flags, with defaults from their AUTHZ_* environment twins (a flag on the
// command line wins), and validates everything, reporting every problem at once.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	c, rest, err := parseArgs("authz", args, getenv, out, nil)
	if err == nil && len(rest) > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", rest)
	}
	return c, err
}

// parseArgs is parseConfig for a named command that may add flags of its own and take
// positional arguments, which it returns.
func parseArgs(name string, args []string, getenv func(string) string, out io.Writer, extra func(*flag.FlagSet)) (*config, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package's own messages would print the usage after every mistake; errors are
	// reported once by the caller, and the usage only when asked for.
	fs.SetOutput(io.Discard)
	var own map[string]bool // the flags extra adds: a subcommand's own
	var (
		c                                                                       config
		audience, clientIDs, algs, logLevel, httpSource, dpopAlgs, claimHeaders string
	)
	c.Identity = policy.DefaultIdentity()
	fs.StringVar(&c.Issuer, "issuer", "", "issuer URL, matched exactly against the token's iss (required; e.g. https://{yourOktaDomain}/oauth2/default)")
	fs.StringVar(&audience, "audience", "api://default", "expected audience(s), comma-separated; any one must be in aud")
	fs.StringVar(&clientIDs, "client-ids", "", "allowed client ids (cid), comma-separated; empty allows any")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "key set URL; skips discovery from the issuer's metadata")
	fs.StringVar(&algs, "algs", "RS256", "allowed signing algorithms, comma-separated (RS*, PS*, ES*, EdDSA, Ed25519)")
	fs.DurationVar(&c.Leeway, "leeway", 2*time.Minute, "clock skew allowed on exp, nbf and iat")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", ":9001", "Envoy ext_authz gRPC listener")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":9002", "HTTP decision API listener (Envoy http_service, nginx auth_request, Traefik ForwardAuth)")
	fs.StringVar(&c.AdminAddr, "admin-addr", ":9003", "admin listener: /healthz, /readyz")
	c.Limits.flags(fs)
	fs.DurationVar(&c.ShutdownDrain, "shutdown-drain", 10*time.Second, "after SIGTERM: how long to keep serving with /readyz and gRPC health NOT_SERVING, so that proxies move away first (Kubernetes' terminationGracePeriodSeconds must cover it and --shutdown-timeout)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "after the drain: how long checks in flight may take before the listeners are closed")
	fs.BoolVar(&c.AllowHTTPIssuer, "allow-http-issuer", false, "permit a plain-http issuer and key URL (local stacks only)")
	fs.StringVar(&c.Policy, "policy", "", "route policy file (YAML); without one every route needs a valid token. Reloaded on SIGHUP and when the file changes")
	fs.StringVar(&c.Realm, "realm", "api", "realm in WWW-Authenticate")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.IntVar(&c.CacheSize, "cache-size", token.DefaultCacheSize, "verified tokens kept in memory (by SHA-256, never the token); 0 disables the cache")
	fs.StringVar(&c.DecisionLog, "decision-log", authz.DecisionLogDenials, "decisions to log: denials, all, off (dry-run denials are always logged)")
	fs.Float64Var(&c.LogSample, "decision-log-sample", 1, "with --decision-log all, the fraction of allows logged (0 < f ≤ 1)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for TLS on the gRPC and HTTP listeners (reloaded when it changes)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&c.ClientCA, "client-ca", "", "PEM CA bundle: require client certificates it signed (mutual TLS); needs --tls-cert")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go's /debug/pprof/ profiles on the admin listener")
	fs.StringVar(&c.HTTPPathPrefix, "http-path-prefix", "", "prefix to strip from paths on the HTTP decision API (Envoy http_service path_prefix)")
	fs.StringVar(&httpSource, "http-request-headers", string(httpapi.SourceAuto), "whose headers name the request on the HTTP decision API: nginx (X-Original-*), traefik (X-Forwarded-*), envoy (the request itself), or auto (exactly one of nginx's or Traefik's sets present; Envoy's with --http-path-prefix)")
	fs.StringVar(&dpopAlgs, "dpop-algs", strings.Join(dpop.DefaultAlgs, ","), "DPoP proof algorithms accepted, comma-separated (RS*, PS*, ES*, EdDSA, Ed25519); empty turns the DPoP scheme off (DPoP-bound tokens are still refused as bearer tokens)")
	fs.DurationVar(&c.DPoPMaxAge, "dpop-max-age", dpop.DefaultMaxAge, "how old a DPoP proof's iat may be (plus --leeway)")
	fs.StringVar(&c.DPoPReplayStore, "dpop-replay-store", "memory", "where DPoP proofs are remembered against replay: memory (per replica) or redis://[:password@]host:port/db (rediss:// for TLS), shared by replicas")
	fs.DurationVar(&c.DPoPStoreTimeout, "dpop-replay-store-timeout", dpop.DefaultRedisTimeout, "how long a DPoP proof's check waits for the Redis replay store before it cannot answer (connections are set up beforehand, never within it): above the round trip to Redis, below the proxy's timeout")
	fs.StringVar(&c.DPoPStoreFailure, "dpop-replay-store-failure", "deny", "when the Redis replay store cannot answer: deny (503, fail closed) or local (check this replica's memory instead)")
	fs.IntVar(&c.DPoPReplayEntries, "dpop-replay-cache-size", 100_000, "DPoP proofs remembered in memory; when full, the oldest proof of the key holding the most is forgotten and that key's older proofs refused as too old")
	fs.StringVar(&c.PublicURL, "public-url", "", "the external origin clients use (https://api.example.com) when TLS or the host change before the proxy: DPoP proofs' htu is compared with it")
	fs.StringVar(&c.ClientCertHeader, "client-cert-header", "", "HTTP decision API: the header in which the proxy passes the mTLS client certificate (nginx: X-Client-Cert from $ssl_client_escaped_cert); empty: certificate-bound tokens are refused there")
	fs.StringVar(&claimHeaders, "claim-headers", "", "claims forwarded as headers on allow, comma-separated header=claim pairs (x-user-email=email,x-user-groups=groups); the policy file's identity section can add and override")
	fs.BoolVar(&c.Identity.ClaimsHeader, "claims-header", true, "forward the whole verified payload in x-authz-claims")
	fs.BoolVar(&c.Identity.ForwardAuthorization, "forward-authorization", false, "keep the Authorization (and DPoP) header for the upstream; by default it is removed on allow")
	var introspection policy.IntrospectionSpec
	var introspectionTTL, introspectionTimeout time.Duration
	introspectionFlags(fs, &introspection, &introspectionTTL, &introspectionTimeout)
	fs.BoolVar(&c.RequireATJWT, "require-at-jwt", false, "require the RFC 9068 header typ at+jwt on --issuer's tokens (off for Okta, whose access tokens carry no typ)")
	fs.BoolVar(&c.Dev, "dev", false, "development mode: a dev issuer at --dev-addr (started in process unless --issuer names a running one), the demo route policy unless --policy, plain-http issuer allowed; never in production")
	fs.StringVar(&c.DevAddr, "dev-addr", devidp.DefaultAddr, "--dev: the dev issuer's listener; its issuer is http://localhost:PORT/oauth2/default, as devidp's")
	fs.StringVar(&c.DevKey, "dev-key", "", "--dev: the dev issuer's signing key, a PEM file created when absent, so that tokens survive restarts (devidp --key takes the same file)")
	fs.BoolVar(&c.CheckConfig, "check-config", false, "validate the configuration and exit")
	if extra != nil {
		before := map[string]bool{}
		fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
		extra(fs)
		own = map[string]bool{}
		fs.VisitAll(func(f *flag.Flag) {
			if !before[f.Name] {
				own[f.Name] = true
			}
		})
	}
	describeValues(fs)

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(out, name, fs, own)
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%s\n(%s --help lists every flag)", flagError(err), name)
	}
	c.Audiences = splitList(audience)
	c.ClientIDs = splitList(clientIDs)
	c.Algs = splitList(algs)
	c.HTTPSource = httpapi.RequestSource(httpSource)
	c.DPoPAlgs = splitList(dpopAlgs)
	if hs, err := policy.ParseClaimHeaders(claimHeaders); err != nil {
		errs = append(errs, fmt.Errorf("--claim-headers: %w", err))
	} else {
		c.Identity.Claims = hs
	}
	introspection.CacheTTL, introspection.Timeout = policy.Duration(introspectionTTL), policy.Duration(introspectionTimeout)
	introspection.ClientSecret = getenv(secretEnv)
	c.Introspection = &introspection
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %q is not debug, info, warn or error", logLevel))
	}
	set := map[string]bool{} // the flags given, on the command line or in the environment
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["max-connections-per-client"] {
		// A smaller --max-connections alone lowers the per-client default with it, rather
		// than fail to start.
		c.Limits.MaxConnsPerClient = min(c.Limits.MaxConnsPerClient, c.Limits.MaxConns)
	}
	if c.Dev {
		if !set["shutdown-drain"] {
			c.ShutdownDrain = 0 // nothing routes around a local dev service: Ctrl-C stops it at once
		}
		if !set["introspection"] {
			// The dev issuer answers introspection: every token is introspected, so that a
			// revocation (devidp revoke) shows within a few seconds.
			*c.Introspection = policy.IntrospectionSpec{Mode: string(token.IntrospectAlways), ClientID: devClientID,
				ClientSecret: devClientSecret, CacheTTL: policy.Duration(devIntrospectionTTL), Timeout: introspection.Timeout,
				CacheSize: introspection.CacheSize}
		}
	}
	errs = append(errs, c.validate()...)
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return &c, fs.Args(), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validate checks every setting and returns all problems, and collects warnings.
func (c *config) validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.Dev {
		// With --issuer, --dev points at a dev issuer that is already running (devidp, or
		// another authz --dev); without, the issuer is the one at --dev-addr.
		if err := checkAddr(c.DevAddr); err != nil {
			add("--dev-addr: %v", err)
		}
		c.AllowHTTPIssuer = true
		switch {
		case c.Issuer == "":
			c.Issuer = devidp.IssuerFor(c.DevAddr)
		case !strings.HasPrefix(c.Issuer, "http://"):
			// A real issuer with --dev (say AUTHZ_DEV left set in production) would run with the
			// demo policy and plain http allowed: refuse it loudly instead.
			add("--dev points only at a dev issuer (http://…); %q looks like a real one: drop --dev", c.Issuer)
		default:
			c.devExternal = true
		}
		if c.Policy == "" {
			p, err := policy.LoadWith(demopolicy.Demo, c.policyOptions())
			if err != nil {
				add("the demo policy: %v", err)
			}
			c.PolicyRules = p
		}
	}
	if !c.Dev || c.devExternal {
		switch {
		case c.Issuer == "" && c.Policy == "":
			add("--issuer is required (e.g. https://{yourOktaDomain}/oauth2/default), or use --dev for a local dev issuer")
		case c.Issuer == "":
			// The policy file must then declare its issuers; checked once it is loaded.
		default:
			if err := checkIssuerURL("--issuer", c.Issuer, c.AllowHTTPIssuer); err != nil {
				errs = append(errs, err)
			} else if w := oktaOrgServerWarning(c.Issuer); w != "" {
				c.Warnings = append(c.Warnings, w)
			}
		}
		if c.JWKSURL != "" {
			if err := checkIssuerURL("--jwks-url", c.JWKSURL, c.AllowHTTPIssuer); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(c.Audiences) == 0 {
		add("--audience must name at least one audience (Okta's default authorization server uses api://default)")
	}
	if len(c.Algs) == 0 {
		add("--algs must name at least one algorithm")
	}
	errs = append(errs, checkAlgs("--algs", c.Algs)...)
	if in := c.Introspection; in.Mode != "" && in.Mode != "off" {
		if c.Issuer == "" {
			add("--introspection needs --issuer (a policy file's issuers take introspection: of their own)")
		}
		for name, d := range map[string]policy.Duration{"--introspection-cache-ttl": in.CacheTTL, "--introspection-timeout": in.Timeout} {
			if d <= 0 {
				add("%s %s must be between 1ms and 1h", name, time.Duration(d))
			}
		}
		if time.Duration(in.Timeout) >= c.Limits.CheckTimeout {
			// Else a check waiting for the endpoint is cut off by its own deadline (gRPC) or
			// its answer dropped (HTTP), instead of answering 503 with Retry-After.
			add("--introspection-timeout %s must be shorter than --check-timeout %s", time.Duration(in.Timeout), c.Limits.CheckTimeout)
		}
	}
	errs = append(errs, checkIntrospection("--introspection", c.Introspection, c.JWKSURL, c.AllowHTTPIssuer)...)
	if c.Introspection.ClientSecretFile != "" && c.Introspection.ClientSecret != "" {
		add("--introspection-client-secret-file and %s: give one", secretEnv)
	}
	errs = append(errs, checkAlgs("--dpop-algs", c.DPoPAlgs)...)
	if c.DPoPMaxAge < time.Second || c.DPoPMaxAge > time.Hour {
		add("--dpop-max-age %s must be between 1s and 1h", c.DPoPMaxAge)
	}
	if c.DPoPReplayStore != "memory" {
		if u, err := url.Parse(c.DPoPReplayStore); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			add("--dpop-replay-store must be memory or a redis:// or rediss:// URL")
		}
	}
	if c.DPoPStoreTimeout < 10*time.Millisecond || c.DPoPStoreTimeout > 10*time.Second {
		add("--dpop-replay-store-timeout %s must be between 10ms and 10s", c.DPoPStoreTimeout)
	}
	if c.DPoPStoreFailure != "deny" && c.DPoPStoreFailure != "local" {
		add("--dpop-replay-store-failure %q is not deny or local", c.DPoPStoreFailure)
	}
	if c.DPoPReplayEntries < 1000 || c.DPoPReplayEntries > 10_000_000 {
		add("--dpop-replay-cache-size %d must be between 1000 and 10000000", c.DPoPReplayEntries)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			add("--public-url %q must be an origin: https://host[:port], with no path", c.PublicURL)
		}
	}
	if c.Leeway < 0 || c.Leeway > 10*time.Minute {
		add("--leeway %s must be between 0 and 10m", c.Leeway)
	}
	errs = append(errs, c.Limits.validate()...)
	if c.ShutdownDrain < 0 || c.ShutdownDrain > 5*time.Minute {
		add("--shutdown-drain %s must be between 0 and 5m", c.ShutdownDrain)
	}
	if c.ShutdownTimeout < time.Second || c.ShutdownTimeout > 5*time.Minute {
		add("--shutdown-timeout %s must be between 1s and 5m", c.ShutdownTimeout)
	}
	for name, addr := range map[string]string{"--grpc-addr": c.GRPCAddr, "--http-addr": c.HTTPAddr, "--admin-addr": c.AdminAddr} {
		if err := checkAddr(addr); err != nil {
			add("%s: %v", name, err)
		}
	}
	if c.Policy != "" {
		p, digest, err := readPolicy(c.Policy, c.policyOptions())
		if err != nil {
			errs = append(errs, fmt.Errorf("--policy %s: %w", c.Policy, err))
		}
		c.PolicyRules, c.policyDigest = p, digest
		for _, is := range policyIssuers(c.PolicyRules) {
			if err := checkIssuerURL(fmt.Sprintf("policy issuer %q", is.Name), is.Issuer, c.AllowHTTPIssuer); err != nil {
				errs = append(errs, err)
			}
			for _, a := range is.Algs {
				if !jwks.SupportedAlg(a) {
					add("policy issuer %q: algorithm %q is not supported", is.Name, a)
				}
			}
			errs = append(errs, checkIntrospection(fmt.Sprintf("policy issuer %q: introspection", is.Name), is.Introspection, is.JWKSURL, c.AllowHTTPIssuer)...)
		}
	}
	if c.Realm == "" || strings.ContainsAny(c.Realm, "\"\\") || strings.ContainsFunc(c.Realm, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		add("--realm %q must be non-empty and contain no quotes, backslashes or control characters", c.Realm)
	}
	switch c.DecisionLog {
	case authz.DecisionLogDenials, authz.DecisionLogAll, authz.DecisionLogOff:
	default:
		add("--decision-log %q is not denials, all or off", c.DecisionLog)
	}
	if c.LogSample <= 0 || c.LogSample > 1 {
		add("--decision-log-sample %v must be in (0, 1]", c.LogSample)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		add("--tls-cert and --tls-key go together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		add("--client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
	}
	if c.CacheSize < 0 || c.CacheSize > 10_000_000 {
		add("--cache-size %d must be between 0 (off) and 10000000", c.CacheSize)
	}
	if c.HTTPPathPrefix != "" && !strings.HasPrefix(c.HTTPPathPrefix, "/") {
		add("--http-path-prefix %q must start with /", c.HTTPPathPrefix)
	}
	if !slices.Contains(httpapi.RequestSources, c.HTTPSource) {
		add("--http-request-headers %q is not auto, nginx, traefik or envoy", c.HTTPSource)
	}
	return errs
}

// checkAlgs refuses algorithms a public key cannot authorize, naming the flag.
func checkAlgs(flag string, algs []string) []error {
	var errs []error
	for _, a := range algs {
		switch {
		case strings.EqualFold(a, "none"):
			errs = append(errs, fmt.Errorf("%s: %q would accept unsigned tokens; it is never allowed", flag, a))
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			errs = append(errs, fmt.Errorf("%s: %q is a shared-secret algorithm; a public key cannot verify it safely", flag, a))
		case !jwks.SupportedAlg(a):
			errs = append(errs, fmt.Errorf("%s: %q is not a supported algorithm (%s)", flag, a, keyalg.Names))
		}
	}
	return errs
}

func policyIssuers(p *policy.Policy) []policy.IssuerSpec {
	if p == nil {
		return nil
	}
	return p.Issuers
}

// flagIssuerNames names the issuers configured by flags: the one --issuer (or --dev) is "default".
func (c *config) flagIssuerNames() []string {
	if c.Issuer != "" || c.Dev {
		return []string{"default"}
	}
	return nil
}

// policyOptions are what the flags give a policy file: the issuers it may name besides its own,
// and the identity it goes over.
func (c *config) policyOptions() policy.Options {
	return policy.Options{Issuers: c.flagIssuerNames(), Identity: &c.Identity}
}

// readPolicy loads a policy file, and returns the SHA-256 of what it read.
func readPolicy(path string, opts policy.Options) (*policy.Policy, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	p, err := loadPolicyData(data, opts)
	return p, digest(data), err
}

// loadPolicyData parses a policy file's content.
func loadPolicyData(data []byte, opts policy.Options) (*policy.Policy, error) {
	p, err := policy.LoadWith(data, opts)
	if err != nil {
		return nil, err
	}
	if len(opts.Issuers) == 0 && len(p.Issuers) == 0 {
		return nil, errors.New("no issuer: give --issuer or declare issuers in the policy file")
	}
	return p, nil
}

// checkAddr accepts host:port with a numeric port (host may be empty).
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be a number from 0 to 65535", addr)
	}
	return nil
}

// checkIntrospection checks an issuer's introspection settings, from flags or a policy file,
// alike: their shape, an endpoint that can be found (a jwks_url means no discovery, so no
// introspection_endpoint to read), https unless a local stack allows http (the token and the
// client's credentials travel to it), and durations within bounds (zero: the default).
func checkIntrospection(name string, in *policy.IntrospectionSpec, jwksURL string, allowHTTP bool) []error {
	if in == nil {
		return nil
	}
	var errs []error
	for _, err := range in.Check() {
		errs = append(errs, fmt.Errorf("%s: %v", name, err))
	}
	if in.Mode == "" || in.Mode == "off" {
		return errs
	}
	if in.URL == "" && jwksURL != "" {
		errs = append(errs, fmt.Errorf("%s: an introspection URL is needed with a key URL: without discovery there is no introspection_endpoint to read", name))
	}
	if in.URL != "" {
		if err := checkIssuerURL(name+" URL", in.URL, allowHTTP); err != nil {
			errs = append(errs, err)
		}
	}
	for what, d := range map[string]policy.Duration{"cache TTL": in.CacheTTL, "timeout": in.Timeout} {
		if d != 0 && (d < policy.Duration(time.Millisecond) || time.Duration(d) > time.Hour) {
			errs = append(errs, fmt.Errorf("%s: %s %s must be between 1ms and 1h", name, what, time.Duration(d)))
		}
	}
	if in.CacheSize < 0 || in.CacheSize > 10_000_000 {
		errs = append(errs, fmt.Errorf("%s: cache size %d must be between 1 and 10000000 (0: the default)", name, in.CacheSize))
	}
	return errs
}

func checkIssuerURL(name, raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err == nil && u.User != nil { // not quoted: the user info may be a password
		return fmt.Errorf("%s must not hold user info (user:password@)", name)
	}
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s %q must be an absolute https URL", name, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s %q must not have a query or fragment", name, raw)
	}
	if u.Scheme == "http" && !allowHTTP {
		return fmt.Errorf("%s %q is plain http: keys fetched over http can be forged in transit; use https, or --allow-http-issuer for a local stack", name, raw)
	}
	return nil
}

// oktaOrgServerWarning explains Okta's advice when the issuer is an Okta org authorization
// server (an Okta host with no /oauth2/ path): its access tokens are meant for Okta's own APIs
// and Okta says they must not be validated by a resource server.
func oktaOrgServerWarning(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	okta := false
	for _, suffix := range []string{".okta.com", ".oktapreview.com", ".okta-emea.com", ".okta-gov.com", ".okta.mil"} {
		okta = okta || strings.HasSuffix(host, suffix)
	}
	if !okta || strings.Contains(u.Path, "/oauth2/") {
		return ""
	}
	return fmt.Sprintf("issuer %s is an Okta org authorization server: Okta says its access tokens are for Okta's own APIs "+
		"and must not be validated by your API. Use a custom authorization server, e.g. %s/oauth2/default, with its audience",
		issuer, strings.TrimSuffix(issuer, "/"))
}
