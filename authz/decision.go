// Package authz is the decision: whether a request to a protected API may pass, and what the
// proxy answers or forwards. Decide verifies the request's token once (package token), judges
// the request by the rule of every way the upstream may read it (package policy), proves the
// token's sender binding (DPoP, mutual TLS), and returns a Decision; the Decision renders the
// answer — upstream identity headers, challenges, bodies — that both front ends (packages
// grpcapi and httpapi) put on the wire. It trusts what the front ends read from the proxy's
// request and nothing else: the token is untrusted until token.Verifier says otherwise.
package authz

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/platformauth/envoy-okta-authz/internal/dpop"
	"github.com/platformauth/envoy-okta-authz/internal/reqhost"
	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/policy/stepup"
	"github.com/platformauth/envoy-okta-authz/token"
)

// Outcome is the kind of a decision; each maps to one HTTP status and one gRPC code.
type Outcome int

// The outcomes, in the order a request meets them.
const (
	// Unavailable: the service cannot verify tokens yet (no key set loaded). 503.
	Unavailable Outcome = iota
	// InvalidRequest: the request cannot be judged as the upstream would read it (an ambiguous
	// path, two Authorization headers, the proxy's request headers missing). 400.
	InvalidRequest
	// NoCredentials: no bearer token at all. 401 without an error code (RFC 6750 §3.1).
	NoCredentials
	// InvalidToken: the token is malformed, forged, expired or not for this API. 401.
	InvalidToken
	// InvalidProof: a DPoP proof that is malformed, forged, stale, replayed or for another
	// request. 401 with error="invalid_dpop_proof".
	InvalidProof
	// InsufficientScope: a valid token that lacks what the route needs, or a request that does
	// not meet its conditions (or whose conditions cannot be evaluated). 403.
	InsufficientScope
	// InsufficientAuthentication: a valid token whose authentication is too weak or too old
	// for the route (RFC 9470): 401 with error="insufficient_user_authentication" and the
	// acr_values and max_age to authenticate with.
	InsufficientAuthentication
	// Allow: forward the request with the identity headers.
	Allow
)

// outcomeAnswer is how an outcome is answered: its name (logs, metrics, dynamic metadata),
// the HTTP status, the gRPC code Envoy reads (only Allow is OK) and the error code of the body
// and of the challenge.
type outcomeAnswer struct {
	name    string
	status  int
	code    codes.Code
	errCode string
}

// outcomeAnswers maps every outcome to its answer, in one place.
var outcomeAnswers = [...]outcomeAnswer{
	Unavailable:       {"unavailable", http.StatusServiceUnavailable, codes.Unavailable, "temporarily_unavailable"},
	InvalidRequest:    {"invalid_request", http.StatusBadRequest, codes.InvalidArgument, "invalid_request"},
	NoCredentials:     {"no_credentials", http.StatusUnauthorized, codes.Unauthenticated, "unauthorized"},
	InvalidToken:      {"invalid_token", http.StatusUnauthorized, codes.Unauthenticated, "invalid_token"},
	InvalidProof:      {"invalid_dpop_proof", http.StatusUnauthorized, codes.Unauthenticated, "invalid_dpop_proof"},
	InsufficientScope: {"insufficient_scope", http.StatusForbidden, codes.PermissionDenied, "insufficient_scope"},
	InsufficientAuthentication: {"insufficient_user_authentication", http.StatusUnauthorized, codes.Unauthenticated,
		"insufficient_user_authentication"},
	Allow: {"allow", http.StatusOK, codes.OK, ""},
}

// answer is o's answer; an outcome outside the table is answered as Unavailable — a denial,
// never an allow.
func (o Outcome) answer() outcomeAnswer {
	if o >= 0 && int(o) < len(outcomeAnswers) {
		return outcomeAnswers[o]
	}
	return outcomeAnswers[Unavailable]
}

func (o Outcome) String() string { return o.answer().name }

// GRPCCode is the gRPC status code of the outcome's CheckResponse: OK only for Allow.
func (o Outcome) GRPCCode() codes.Code { return o.answer().code }

// Request is what a front end extracts from the proxy's question.
type Request struct {
	Method string
	Host   string
	Path   string // request target as received, query string included; canonicalised by Decide
	// Authorization holds every value of the Authorization header (normally one).
	Authorization []string
	// Headers are the request's headers, read only when a rule needs them (its conditions, a
	// token in a cookie or a header); nil: none but the fields here.
	Headers policy.Headers
	// DPoP holds every value of the DPoP header (one proof, with the DPoP scheme).
	DPoP []string
	// Scheme is the URI scheme the client used ("https", "http"), for a DPoP proof's htu.
	Scheme string
	// ClientCert is the client certificate of the request's mutual TLS, as the proxy passes
	// it (URL-encoded PEM, PEM or base64 DER); empty without one.
	ClientCert string
	// ContextExtensions are Envoy's per-route check_settings (gRPC only).
	ContextExtensions map[string]string
	// MethodOverrides holds the values of the method-override headers (X-HTTP-Method-Override,
	// X-HTTP-Method, X-Method-Override); ContentType and Body say whether the body may be a
	// form (whose _method some upstreams honour).
	MethodOverrides []string
	ContentType     string
	Body            policy.Body
	// Policy is the policy to decide by: the snapshot the front end read the identity header
	// names from, so that one request sees one policy even across a reload. nil: the policy in
	// force.
	Policy    *policy.Policy
	RequestID string
	// Frontend names the front end that asked ("grpc", "http"), for metrics and logs.
	Frontend string
	// Invalid is set by a front end that could not read the request as its proxy sends it;
	// Decide refuses such a request (InvalidRequest), InvalidDetail says why in the log.
	Invalid       *Reason
	InvalidDetail string
}

// Route is what the policy reads of r to choose its rules.
func (r *Request) Route() *policy.Request {
	return &policy.Request{Method: r.Method, Host: r.Host, Path: r.Path, ContextExtensions: r.ContextExtensions,
		MethodOverrides: r.MethodOverrides, ContentType: r.ContentType, Body: r.Body, Headers: r.Headers}
}

// Decision is the answer for one request. Front ends turn it into their wire format through the
// methods in response.go and nowhere else.
type Decision struct {
	Outcome Outcome
	// Reason explains a refusal (nil on Allow); its Code goes to logs and metrics.
	Reason *Reason
	// Detail is the internal explanation for logs; never sent to the client.
	Detail string
	// Scope lists the scopes the route needs, for insufficient_scope answers.
	Scope string
	// StepUp is what an insufficient_user_authentication answer asks for.
	StepUp *stepup.StepUp
	// Credential is the place the request's token came from (token.Authorization when none):
	// an allow removes it from what the upstream receives, unless the rule forwards the token.
	Credential token.Place
	// upstreamCookie is the request's Cookie without the policy's token cookies, when it held
	// one (cookieChanged); tokenHeaders the policy's token headers (Policy.TokenHeaders).
	upstreamCookie string
	cookieChanged  bool
	tokenHeaders   []string
	// Claims are the verified claims (nil unless the signature verified). On Allow they are the
	// identity forwarded upstream; an anonymous allow (public route) has none.
	Claims *token.Claims
	// Rule is the policy rule that decided.
	Rule string
	// Path is the canonical request path the rules judged (empty when the path was refused).
	Path string
	// Scheme is the authorization scheme the request used (token.SchemeBearer, SchemeDPoP), or "".
	Scheme string
	// DPoP says the challenge is the DPoP scheme's (RFC 9449 §7.1): the request used it, or
	// the token or the rule needs it.
	DPoP bool
	// identity is what the deciding rule forwards on Allow; derived is what Claims give under
	// it (claim headers, metadata, upstream headers), set when the deciding rule judged.
	identity *policy.Identity
	derived  *derived
	// WouldBe is set when a rule in dry-run mode turned a denial into this allow: the decision
	// it would have made.
	WouldBe *Decision
}

// DryRun reports whether a dry-run rule let this request through despite a denial.
func (d *Decision) DryRun() bool { return d.WouldBe != nil }

// Authorizer makes decisions. It is safe for concurrent use.
type Authorizer struct {
	verifier  *token.Verifier
	dpop      *dpop.Verifier // nil: the DPoP scheme is not accepted
	publicURL string
	challenge Challenges
	metrics   *Metrics
	logMode   string
	sample    float64
	policy    atomic.Pointer[policy.Policy]
	log       *slog.Logger
}

// Options configure an Authorizer.
type Options struct {
	// Realm goes into WWW-Authenticate.
	Realm  string
	Logger *slog.Logger
	// Policy is the route policy; nil means every route needs a valid token.
	Policy *policy.Policy
	// Metrics, when set, count decisions and their latency.
	Metrics *Metrics
	// DecisionLog says which decisions are logged: DecisionLogDenials (default), DecisionLogAll
	// or DecisionLogOff. Dry-run denials are always logged.
	DecisionLog string
	// AllowSampleRate is the fraction of allows logged with DecisionLogAll (0 means 1).
	AllowSampleRate float64
	// DPoP verifies DPoP proofs; nil turns the DPoP scheme off (DPoP-bound tokens are still
	// refused as bearer tokens).
	DPoP *dpop.Verifier
	// PublicURL is the external origin (scheme://host[:port]) clients use, when TLS or the
	// host name change before the proxy: a DPoP proof's htu is compared with it.
	PublicURL string
}

// Decision log modes.
const (
	DecisionLogDenials = "denials"
	DecisionLogAll     = "all"
	DecisionLogOff     = "off"
)

// NewAuthorizer returns an Authorizer that verifies tokens with v.
func NewAuthorizer(v *token.Verifier, opts Options) *Authorizer {
	if opts.Realm == "" {
		opts.Realm = "api"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DecisionLog == "" {
		opts.DecisionLog = DecisionLogDenials
	}
	if opts.AllowSampleRate <= 0 || opts.AllowSampleRate > 1 {
		opts.AllowSampleRate = 1
	}
	a := &Authorizer{verifier: v, log: opts.Logger, metrics: opts.Metrics,
		logMode: opts.DecisionLog, sample: opts.AllowSampleRate, dpop: opts.DPoP,
		publicURL: strings.TrimSuffix(opts.PublicURL, "/")}
	a.challenge = Challenges{Realm: opts.Realm}
	if opts.DPoP != nil {
		a.challenge.DPoPAlgs = strings.Join(opts.DPoP.Algs(), " ")
	}
	a.SetPolicy(opts.Policy)
	return a
}

// defaultPolicy is the behaviour without a policy file: every route needs a valid token.
var defaultPolicy = policy.Default(nil)

// SetPolicy swaps in a new route policy atomically: each request sees the old or the new one
// whole. nil restores the default (every route needs a valid token).
func (a *Authorizer) SetPolicy(p *policy.Policy) {
	if p == nil {
		p = defaultPolicy
	}
	a.policy.Store(p)
}

// Policy returns the policy in force.
func (a *Authorizer) Policy() *policy.Policy { return a.policy.Load() }

// IssuerNames returns the names of the trusted issuers, in configuration order.
func (a *Authorizer) IssuerNames() []string { return a.verifier.IssuerNames() }

// Now is the clock decisions are made at, and Leeway the clock skew they allow (the verifier's).
func (a *Authorizer) Now() time.Time { return a.verifier.Now() }

// Leeway is the clock skew allowed on a token's times and on a rule's max_age.
func (a *Authorizer) Leeway() time.Duration { return a.verifier.Leeway() }

// Realm returns the realm used in WWW-Authenticate.
func (a *Authorizer) Realm() string { return a.challenge.Realm }

// CachesTokens reports whether verified tokens are cached: then one token's decisions share
// its *token.Claims, which a front end may key memoised answers by.
func (a *Authorizer) CachesTokens() bool { return a.verifier.Caches() }

// Challenges returns what the WWW-Authenticate challenges name: the realm and, when the DPoP
// scheme is accepted, its algorithms.
func (a *Authorizer) Challenges() Challenges { return a.challenge }

// Decide is the one decision path every front end uses.
func (a *Authorizer) Decide(ctx context.Context, r *Request) Decision {
	start := time.Now()
	d := a.decide(ctx, r)
	elapsed := time.Since(start)
	a.metrics.observe(r.Frontend, &d, elapsed)
	a.logDecision(r, &d, elapsed)
	return d
}

// decide refuses a request it cannot judge as the upstream would read it, verifies the token
// once, then judges the request by the rule of every reading of it — each way a common upstream
// may read its method and path (reqpath) — and returns the first refusal, or else the allow of
// the canonical reading. A request is allowed only if every rule it could be served under
// allows it.
func (a *Authorizer) decide(ctx context.Context, r *Request) Decision {
	if r.Invalid != nil {
		return Decision{Outcome: InvalidRequest, Reason: r.Invalid, Detail: r.InvalidDetail}
	}
	path, err := reqpath.Parse(r.Path)
	if err != nil {
		return Decision{Outcome: InvalidRequest, Reason: pathReason(err), Detail: err.Error()}
	}
	// The host the proxy routes on; a host the proxies may split differently is refused before
	// any rule or DPoP proof reads it.
	host, err := reqhost.Parse(r.Host)
	if err != nil {
		return Decision{Outcome: InvalidRequest, Reason: ErrInvalidHost, Path: path.Canonical, Detail: err.Error()}
	}
	pol := r.Policy
	if pol == nil {
		pol = a.policy.Load()
	}
	pr := r.Route()
	var methodBuf [policy.MaxMethods + 1]string
	methods, ok := pol.Methods(methodBuf[:0], pr)
	if !ok {
		return Decision{Outcome: InvalidRequest, Reason: policy.ErrMethodOverrides, Path: path.Canonical}
	}
	var (
		now    time.Time
		leeway time.Duration
	)
	if pol.NeedsClock() {
		now, leeway = a.verifier.Now(), a.verifier.Leeway()
	}
	in := pol.Input(pr, host.Name, methods, path, now, leeway)

	// The rules of every reading, and the places their tokens may come from: the token is read
	// once, from all of those places, so that every rule judges the same token, and a request
	// with tokens in two of them is refused whichever rule would read which.
	var (
		rbuf      [16]*policy.Rule // the rules judged; more than a few is rare
		ebuf      [16]error
		pbuf      [4]token.Place
		judged    = rbuf[:0]
		matchErrs = ebuf[:0] // the error of a match expression that selected the rule
		places    = pbuf[:0]
	)
	pol.EachReading(&in, func(_ string, _ reqpath.Reading, rule *policy.Rule, matchErr error) {
		if i := slices.Index(judged, rule); i >= 0 {
			if matchErrs[i] == nil {
				matchErrs[i] = matchErr
			}
			return
		}
		judged, matchErrs = append(judged, rule), append(matchErrs, matchErr)
		for _, pl := range rule.Credentials {
			if !slices.Contains(places, pl) {
				places = append(places, pl)
			}
		}
	})
	cred := a.credential(ctx, r, host, places)
	switch cred.err {
	case token.ErrMultipleCredentials:
		return Decision{Outcome: InvalidRequest, Reason: token.ErrMultipleCredentials, Path: path.Canonical}
	case token.ErrMultipleTokens, token.ErrEncodedTokenParameter:
		return Decision{Outcome: InvalidRequest, Reason: token.ReasonOf(cred.err), Path: path.Canonical, Detail: cred.detail}
	}

	var decided Decision
	severity := -1
	for i, rule := range judged {
		// Only the canonical reading's rule can be the one whose allow forwards an identity; the
		// other rules judge whether the request may pass, not what the upstream is told.
		d := decideRule(pol, rule, matchErrs[i], &cred, i == 0, &in)
		// Refusals first, then dry-run allows (so their would-be is logged), then allows;
		// among equals the earliest reading (the canonical one first).
		if s := d.severity(); s > severity {
			decided, severity = d, s
		}
	}
	decided.Path, decided.Scheme, decided.Credential = path.Canonical, cred.scheme, cred.place
	if decided.removesToken() {
		// Every token place of the policy, not only this token's: a browser sends its cookies to
		// every route, and a token in a place this route does not read reaches no upstream either.
		decided.tokenHeaders = pol.TokenHeaders()
		if names := pol.TokenCookies(); len(names) > 0 && r.Headers != nil {
			if cookies := r.Headers.Values("cookie"); len(cookies) > 0 {
				decided.upstreamCookie, decided.cookieChanged = token.WithoutCookies(cookies, names)
			}
		}
	}
	return decided
}

// credential is the request's access token, verified once — token and sender binding — for
// all the rules that judge it.
type credential struct {
	scheme string // token.SchemeBearer or SchemeDPoP; empty without usable credentials
	err    error  // errNoCredentials, a malformed header, or the verification's or binding's error
	// detail explains err for the log (which places), never naming the token.
	detail string
	claims *token.Claims
	parsed bool         // a token was found and verified (err is then the verification's or binding's)
	bound  policy.Bound // the sender constraints the request proved
	// place is where the token was found.
	place token.Place
}

// credential finds the token in places (the Authorization header alone, usually) and verifies
// it.
func (a *Authorizer) credential(ctx context.Context, r *Request, host reqhost.Host, places []token.Place) credential {
	var (
		f   token.Found
		err error
	)
	if len(places) == 1 && places[0] == token.Authorization {
		f.Scheme, f.Token, err = token.ParseAuthorization(r.Authorization) // the common case, as it always was
	} else {
		var h token.HeaderReader
		if r.Headers != nil {
			h = r.Headers
		}
		f, err = token.Find(places, r.Authorization, r.Path, h)
	}
	if err == nil && f.Scheme == token.SchemeDPoP && a.dpop == nil {
		err, f.Scheme = token.ErrNoCredentials, "" // the DPoP scheme is off: not credentials this service takes
	}
	c := credential{scheme: f.Scheme, place: f.Place}
	if err != nil {
		c.err = err
		for _, r := range []*token.Reason{token.ErrMultipleTokens, token.ErrEncodedTokenParameter} {
			if err != r && errors.Is(err, r) { // (errors.Is: ReasonOf's errors.As would allocate for every request without a token)
				c.err, c.detail = r, err.Error()
			}
		}
		return c
	}
	c.parsed = true
	c.claims, c.err = a.verifier.Verify(ctx, f.Token)
	if c.err == nil {
		c.bound, c.err = a.bind(ctx, r, host, f.Scheme, f.Token, c.claims)
	}
	return c
}

// severity orders decisions for decide: a refusal over a dry-run allow over an allow.
func (d *Decision) severity() int {
	switch {
	case d.Outcome != Allow:
		return 2
	case d.WouldBe != nil:
		return 1
	}
	return 0
}

// decideRule is the decision of one rule on a request's credential: the token, its
// verification, then the rule's requirements; in dry run a refusal becomes an allow that
// remembers it. matchErr is the error of a match expression that selected the rule.
func decideRule(pol *policy.Policy, rule *policy.Rule, matchErr error, cred *credential, forwards bool, in *policy.Input) Decision {
	d := judge(pol, rule, matchErr, cred, forwards, in)
	d.Rule = rule.Name
	if d.Outcome != Allow && (rule.DryRun || pol.DryRun) {
		// Dry run: say what would have happened, let the request through. Only a fully valid
		// token's identity is forwarded.
		would := d
		d = Decision{Outcome: Allow, Rule: rule.Name, WouldBe: &would}
		if would.Outcome == InsufficientScope || would.Outcome == InsufficientAuthentication {
			d.Claims = would.Claims
		}
	}
	return d
}

func judge(pol *policy.Policy, rule *policy.Rule, matchErr error, cred *credential, forwards bool, in *policy.Input) Decision {
	d := judgeToken(pol, rule, matchErr, cred, forwards, in)
	d.identity = rule.Identity()
	// The challenge is DPoP's when the client used DPoP or only DPoP can help, and Bearer's
	// when the rule asks for a certificate-bound token.
	switch {
	case d.Reason == ErrSenderConstrained:
		d.DPoP = rule.SenderConstrained != policy.SenderMTLS
	default:
		d.DPoP = cred.scheme == token.SchemeDPoP || d.Reason == ErrDPoPBoundAsBearer
	}
	return d
}

// judgeToken is judge without the challenge. With forwards, an allow renders the rule's
// identity (a claim it cannot forward refuses the request); without, the rule only judges.
func judgeToken(pol *policy.Policy, rule *policy.Rule, matchErr error, cred *credential, forwards bool, in *policy.Input) Decision {
	if matchErr != nil {
		// The rule cannot tell whether it covers the request: it refuses it, public or not, rather
		// than let it fall to another rule.
		return Decision{Outcome: InsufficientScope, Reason: policy.ErrConditionError, Detail: matchErr.Error()}
	}
	err := cred.err
	if err != token.ErrNoCredentials && !slices.Contains(rule.Credentials, cred.place) {
		// A token in a place this rule does not read (another reading's rule does): none, here.
		err = token.ErrNoCredentials
	}
	switch {
	case err == nil:
	case rule.Public && cred.parsed:
		// An invalid token or proof on a public route is ignored: no identity, no denial.
		return Decision{Outcome: Allow, Detail: "ignored invalid credentials: " + err.Error()}
	case rule.Public:
		return Decision{Outcome: Allow}
	case err == token.ErrNoCredentials:
		d := Decision{Outcome: NoCredentials, Reason: token.ErrNoCredentials}
		if cred.err != token.ErrNoCredentials {
			d.Detail = "the token is in " + cred.place.String() + ", which the rule does not read"
		}
		return d
	case !cred.parsed:
		return Decision{Outcome: InvalidToken, Reason: token.ReasonOf(err), Detail: err.Error()}
	default:
		if f, ok := proofFailure(err); ok {
			if f == dpop.ErrStoreUnavailable {
				return Decision{Outcome: Unavailable, Reason: proofReason(f), Detail: err.Error(), Claims: cred.claims}
			}
			return Decision{Outcome: InvalidProof, Reason: proofReason(f), Detail: err.Error(), Claims: cred.claims}
		}
		reason := token.ReasonOf(err)
		outcome := InvalidToken
		if reason == token.ErrKeysNotLoaded || reason == token.ErrKeyNotFetched || reason == token.ErrIntrospectionUnavailable {
			outcome = Unavailable
		}
		return Decision{Outcome: outcome, Reason: reason, Detail: err.Error(), Claims: cred.claims}
	}
	if !rule.ConstraintMet(cred.bound) {
		return Decision{Outcome: InvalidToken, Reason: ErrSenderConstrained, Claims: cred.claims,
			Detail: "the rule requires a " + string(rule.SenderConstrained) + "-bound token"}
	}
	if ref := pol.Judge(rule, cred.claims, in); ref.Reason != nil {
		outcome := InsufficientScope
		if ref.StepUp != nil {
			outcome = InsufficientAuthentication
		}
		return Decision{Outcome: outcome, Reason: ref.Reason, Scope: ref.Scope, StepUp: ref.StepUp, Detail: ref.Detail, Claims: cred.claims}
	}
	if !forwards {
		return Decision{Outcome: Allow, Claims: cred.claims}
	}
	id := rule.Identity()
	if len(id.Claims) == 0 && len(id.Metadata) == 0 {
		// Nothing that can fail to render: the upstream headers are derived when a front end
		// asks (Decision.upstream), not for every decision.
		return Decision{Outcome: Allow, Claims: cred.claims}
	}
	dv := derive(id, cred.claims)
	if err := dv.err; err != nil {
		// Never a header injection, never an identity cut short that looks complete.
		return Decision{Outcome: InvalidToken, Reason: ErrClaimUnforwardable, Detail: err.Error(), Claims: cred.claims}
	}
	return Decision{Outcome: Allow, Claims: cred.claims, derived: dv}
}

// logDecision writes one line per refusal (allows at debug). It logs identifiers from the
// verified claims, never the token or the Authorization header.
func (a *Authorizer) logDecision(r *Request, d *Decision, elapsed time.Duration) {
	level := slog.LevelInfo
	switch {
	case d.WouldBe != nil:
		level = slog.LevelWarn
	case a.logMode == DecisionLogOff:
		return
	case d.Outcome == Allow && a.logMode != DecisionLogAll:
		level = slog.LevelDebug // visible with --log-level debug
	case d.Outcome == Allow && a.sample < 1 && rand.Float64() >= a.sample:
		return
	}
	if !a.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision", d.Outcome.String()),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", pathOnly(r.Path)),
	}
	if d.Path != "" && d.Path != pathOnly(r.Path) {
		attrs = append(attrs, slog.String("canonical_path", d.Path))
	}
	if r.RequestID != "" {
		attrs = append(attrs, slog.String("request_id", r.RequestID))
	}
	if r.Frontend != "" {
		attrs = append(attrs, slog.String("frontend", r.Frontend))
	}
	attrs = append(attrs, slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000))
	if d.Rule != "" {
		attrs = append(attrs, slog.String("rule", d.Rule))
	}
	if d.Reason != nil {
		attrs = append(attrs, slog.String("reason", d.Reason.Code))
	}
	if w := d.WouldBe; w != nil {
		// Dry run: the denial that was not enforced, and why.
		attrs = append(attrs, slog.Bool("dry_run", true), slog.String("would_be", w.Outcome.String()),
			slog.String("reason", w.Reason.Code))
		if w.Detail != "" {
			attrs = append(attrs, slog.String("detail", w.Detail))
		}
		if c := w.Claims; c != nil && d.Claims == nil {
			attrs = append(attrs, slog.String("sub", c.Subject), slog.String("cid", c.ClientID))
		}
	}
	if d.Detail != "" {
		attrs = append(attrs, slog.String("detail", d.Detail))
	}
	if c := d.Claims; c != nil {
		attrs = append(attrs, slog.String("sub", c.Subject), slog.String("cid", c.ClientID),
			slog.String("kid", c.KeyID), slog.String("jti", c.ID), slog.String("iss", c.Issuer))
	}
	a.log.LogAttrs(context.Background(), level, "authz decision", attrs...)
}

// pathOnly drops the query string, which may carry secrets.
func pathOnly(p string) string {
	path, _, _ := strings.Cut(p, "?")
	return path
}
