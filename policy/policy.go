package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/platformauth/envoy-okta-authz/internal/reqhost"
	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
	"github.com/platformauth/envoy-okta-authz/policy/expr"
	"github.com/platformauth/envoy-okta-authz/policy/stepup"
	"github.com/platformauth/envoy-okta-authz/token"
	"github.com/platformauth/envoy-okta-authz/token/introspect"
	"go.yaml.in/yaml/v3"
)

// Policy is a parsed, validated route policy: rules matched first-match-wins, and a default
// rule for requests no rule matches. It is immutable; reloads swap in a new one.
type Policy struct {
	Rules   []*Rule
	Default *Rule
	// DryRun makes every rule decide, log what it would deny, and allow.
	DryRun bool
	// Issuers are the extra trusted issuers the file declares (fixed at start-up).
	Issuers []IssuerSpec
	// Paths says how the upstream may read a path besides its canonical form; a request must
	// satisfy the rule of every reading (see Authorizer.decide).
	Paths reqpath.Options
	// MethodReadings: some rule names methods, so a request is also judged under every other
	// method the upstream may run it as (see methods): HEAD as GET, and overrides.
	MethodReadings bool
	// MethodOverride: the upstream may honour method overrides (upstream_paths.method_override).
	MethodOverride bool
	// ruleMethods are the methods the rules name, for a form POST whose body may name any.
	ruleMethods []string
	// exprReadsMethod: an expression reads request.method.
	exprReadsMethod bool
	// identityNames are the claim headers any rule sets: a client's copies are always removed.
	identityNames identityNames
	// hidden are the headers expressions never see (hiddenHeaders and the rules' token headers);
	// tokenCookies and tokenHeaders: the cookies and headers some rule reads a token from;
	// clock: some rule has a condition or a step-up requirement, which read the time.
	hidden       map[string]bool
	tokenCookies []string
	tokenHeaders []string
	clock        bool
}

// ReadsCookies reports whether some rule may read its token from a cookie: then the HTTP
// decision API tells the proxy, on every allow, the Cookie header the upstream gets.
func (p *Policy) ReadsCookies() bool { return len(p.tokenCookies) > 0 }

// TokenCookies are the cookies some rule reads a token from, and TokenHeaders the headers (other
// than Authorization): every allow that does not forward the token keeps them all from the
// upstream, whichever place the request's token came from — a browser sends its cookies with
// every request, to routes that read them and to routes that do not.
func (p *Policy) TokenCookies() []string { return p.tokenCookies }

// TokenHeaders: see TokenCookies.
func (p *Policy) TokenHeaders() []string { return p.tokenHeaders }

// CredentialPlaces are the places other than the Authorization header some rule reads a token
// from: what a proxy must pass to the service, and keep from the upstream.
func (p *Policy) CredentialPlaces() []token.Place {
	var out []token.Place
	for _, rule := range append(slices.Clip(p.Rules), p.Default) {
		for _, pl := range rule.Credentials {
			if pl != token.Authorization && !slices.Contains(out, pl) {
				out = append(out, pl)
			}
		}
	}
	return out
}

// NeedsClock reports whether a decision under p reads the time (Input.Now).
func (p *Policy) NeedsClock() bool { return p.clock }

// setIdentities gives every rule without one the identity id (DefaultIdentity when nil), and
// collects the names of every configured claim header.
func (p *Policy) setIdentities(id *Identity) {
	if id == nil {
		d := DefaultIdentity()
		id = &d
	}
	p.identityNames = identityNames{}
	for _, r := range append(slices.Clip(p.Rules), p.Default) {
		if r.identity == nil {
			r.identity = id
		}
		for _, c := range r.identity.Claims {
			p.identityNames[c.Header] = true
		}
	}
}

// IdentityHeaders are the names of the claim headers the policy's rules configure, sorted.
func (p *Policy) IdentityHeaders() []string {
	return sortedKeys(p.identityNames)
}

// ProxyHeaders are every identity header an allow may set: the fixed ones, then the policy's
// claim headers — what a proxy must copy from an allow and clear from a client.
func (p *Policy) ProxyHeaders() []string {
	return append(slices.Clone(FixedIdentityHeaders), p.IdentityHeaders()...)
}

// IssuerSpec is an issuer declared in a policy file.
type IssuerSpec struct {
	Name      string   `yaml:"name"`
	Issuer    string   `yaml:"issuer"`
	Audiences []string `yaml:"audiences"`
	ClientIDs []string `yaml:"client_ids"`
	JWKSURL   string   `yaml:"jwks_url"`
	Algs      []string `yaml:"algs"`
	// RequireATJWT demands the RFC 9068 header typ "at+jwt" (issuers that follow RFC 9068;
	// Okta's access tokens carry no typ).
	RequireATJWT bool `yaml:"require_at_jwt"`
	// Introspection asks the issuer about its tokens (RFC 7662); nil is off.
	Introspection *IntrospectionSpec `yaml:"introspection"`
}

// IntrospectionSpec is an issuer's introspection settings, as the --introspection* flags or a
// policy file's issuer give them. The client secret comes from a file (or, for --issuer, the
// environment), never from the policy file itself.
type IntrospectionSpec struct {
	// Mode is off, opaque or always (token.IntrospectionMode).
	Mode string `yaml:"mode"`
	// URL is the endpoint; empty: the issuer metadata's introspection_endpoint.
	URL string `yaml:"url"`
	// Auth is the client authentication (introspect.Auth; default client_secret_basic).
	Auth             string `yaml:"auth"`
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// ClientSecret is the secret itself, from AUTHZ_INTROSPECTION_CLIENT_SECRET for --issuer;
	// never from a policy file.
	ClientSecret string `yaml:"-"`
	KeyFile      string `yaml:"key_file"`
	// CacheTTL bounds how long an active answer is reused (the revocation window); Timeout
	// bounds a call. Zero: the defaults (60s, 2s).
	CacheTTL Duration `yaml:"cache_ttl"`
	Timeout  Duration `yaml:"timeout"`
	// CacheSize bounds the active answers kept (0: the default, 10,000); each holds at most
	// 16 KiB of answer.
	CacheSize int `yaml:"cache_size"`
}

// Check says what is wrong with the settings (nil settings are off, and fine): the mode, the
// client authentication and what it needs, the URL. Files are read where the client is built.
func (s *IntrospectionSpec) Check() []error {
	if s == nil {
		return nil
	}
	var errs []error
	mode := token.IntrospectionMode(s.Mode)
	if !slices.Contains(token.IntrospectionModes, mode) {
		errs = append(errs, fmt.Errorf("mode %q is not off, opaque or always", s.Mode))
	}
	if mode == token.IntrospectOff || mode == "" {
		return errs
	}
	auth := introspect.ClientSecretBasic
	if s.Auth != "" {
		a, err := introspect.ParseAuth(s.Auth)
		if err != nil {
			errs = append(errs, fmt.Errorf("auth: %v", err))
		}
		auth = a
	}
	switch auth {
	case introspect.ClientSecretBasic, introspect.ClientSecretPost, introspect.ClientSecretJWT:
		if s.ClientID == "" || s.ClientSecretFile == "" && s.ClientSecret == "" {
			errs = append(errs, fmt.Errorf("auth %s needs a client id and a client secret (a file)", auth))
		}
	case introspect.PrivateKeyJWT:
		if s.ClientID == "" || s.KeyFile == "" {
			errs = append(errs, fmt.Errorf("auth %s needs a client id and a key file", auth))
		}
	}
	if s.URL != "" {
		if err := introspect.CheckEndpoint(s.URL); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Duration is a time.Duration written as in Go ("60s", "2m").
type Duration time.Duration

// UnmarshalYAML reads a duration string. A mistake is a *yaml.TypeError, which lets the
// decoder go on: the shape check reports it with the file's other mistakes.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if msg := d.ShapeError(n); msg != "" {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
	}
	v, _ := time.ParseDuration(n.Value)
	*d = Duration(v)
	return nil
}

// ShapeError says what is wrong with a duration's shape ("" when nothing is).
func (*Duration) ShapeError(n *yaml.Node) string {
	if v, err := time.ParseDuration(n.Value); n.Kind != yaml.ScalarNode || err != nil || v < 0 {
		return fmt.Sprintf("%q is not a duration (60s, 2m)", n.Value)
	}
	return ""
}

// Request is what the policy reads of a request to choose its rules.
type Request struct {
	Method string
	// Host is the Host (or :authority) as sent.
	Host string
	// Path is the request target as sent, query string included.
	Path string
	// ContextExtensions are Envoy's per-route check_settings (gRPC only).
	ContextExtensions map[string]string
	// MethodOverrides, ContentType and Body say what other method the upstream may run the
	// request as (Methods).
	MethodOverrides []string
	ContentType     string
	Body            Body
	// Headers are the request's headers, for expressions and tokens in a cookie or a header;
	// nil when the front end has none to give.
	Headers Headers
}

// Headers are a request's headers as the proxy passed them, read only when a rule needs them.
type Headers interface {
	// Values returns the values of the header with the lower-case name.
	Values(name string) []string
	// Each calls fn with every header (a repeated one once per value), its name lower-case.
	Each(fn func(name, value string))
}

// IsIdentityHeader reports whether a lower-case header name is one an allow under p may set:
// the x-authz-* ones and every configured claim header. A client's copy never reaches the
// upstream.
func (p *Policy) IsIdentityHeader(name string) bool { return p.identityNames.has(name) }

// IsIdentityHeaderFold is IsIdentityHeader for a name in any case (net/http's canonical keys),
// without lower-casing every header of every request.
func (p *Policy) IsIdentityHeaderFold(name string) bool { return p.identityNames.hasFold(name) }

// Rule says which requests it covers and what they need.
type Rule struct {
	Name string
	Line int // line in the policy file, for messages

	// Match conditions; all that are set must hold. A rule with none matches everything.
	Policy  string   // Envoy context_extensions["policy"]
	Hosts   []string // lower-case, without port
	Methods []string // upper-case
	paths   pathMatcher
	// MatchCEL are match.cel's expressions: all must hold (evaluated last, the cheap tests first).
	MatchCEL []*expr.Program
	// Credentials are the places the rule reads a token from (never empty once loaded).
	Credentials []token.Place

	// Public rules need no token: a valid one still forwards identity, an invalid one is ignored.
	Public bool
	// Requirements on a valid token.
	Scopes    []string // all of
	AnyScopes []string // at least one of
	Claims    []ClaimRequirement
	Issuers   []string // issuer names, any-of
	Audiences []string // any-of, on top of the issuer's own
	// SenderConstrained demands a token bound to the presenter (empty: a bearer token does).
	SenderConstrained SenderConstraint
	// Conditions are require.cel's expressions: all must hold.
	Conditions []*expr.Program
	// StepUp asks how and how recently the user authenticated (nil: no matter).
	StepUp *stepup.StepUp
	DryRun bool
	// identity is what an allow by this rule forwards (never nil once loaded).
	identity *Identity
}

// Identity returns what an allow by the rule forwards upstream.
func (rule *Rule) Identity() *Identity { return rule.identity }

// SenderConstraint is what a rule requires a token to be bound to.
type SenderConstraint string

// The sender constraints a rule may require.
const (
	SenderDPoP SenderConstraint = "dpop" // a DPoP-bound token with a valid proof (RFC 9449)
	SenderMTLS SenderConstraint = "mtls" // a certificate-bound token over mutual TLS (RFC 8705)
	SenderAny  SenderConstraint = "any"  // either
)

// Bound is the set of sender constraints a request proved: its token is bound to a DPoP key
// whose proof came with the request, or to the client certificate of its mutual TLS.
type Bound uint8

// The sender constraints a request may prove.
const (
	BoundDPoP Bound = 1 << iota
	BoundMTLS
)

// ConstraintMet reports whether the constraints a request proved satisfy the rule's.
func (rule *Rule) ConstraintMet(bound Bound) bool {
	switch rule.SenderConstrained {
	case SenderDPoP:
		return bound&BoundDPoP != 0
	case SenderMTLS:
		return bound&BoundMTLS != 0
	case SenderAny:
		return bound != 0
	}
	return true
}

// ClaimRequirement is one assertion on a claim, like Okta's assertClaims.
type ClaimRequirement struct {
	Claim       string // dotted path into the claims, e.g. "address.country"
	Equals      any    // the claim equals this value
	OneOf       []any  // the claim equals one of these
	Contains    any    // the claim (array, or space-separated string) contains this value
	ContainsAny []any  // ... contains at least one of these
	Exists      *bool  // the claim is present (true) or absent (false)
}

// match reports whether the rule covers in's request read with method and path reading rd.
// An expression that cannot be evaluated selects the rule, with the error: the rule refuses
// the request, which never falls to a rule after it.
func (rule *Rule) match(in *Input, method string, rd reqpath.Reading) (bool, error) {
	r := &in.Request
	if rule.Policy != "" && r.ContextExtensions["policy"] != rule.Policy {
		return false, nil
	}
	if len(rule.Hosts) > 0 && !slices.Contains(rule.Hosts, in.Host) {
		return false, nil
	}
	if len(rule.Methods) > 0 && !slices.Contains(rule.Methods, method) {
		return false, nil
	}
	if !rule.paths.match(rd) {
		return false, nil
	}
	for i, m := range rule.MatchCEL {
		ok, err := m.Eval(in.vars(method, rd.Path))
		if err != nil {
			return true, fmt.Errorf("match.cel[%d] %s under %s %s: %w", i, m.Source(), method, rd.Path, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// EachReading calls fn with every reading of in's request — each way a common upstream may read
// its method and canonical path — and the rule that reading selects (with the error of a match
// expression that could not be evaluated), the canonical reading first. Path readings that
// cannot select another rule (no rules) are skipped, and so is a reading without a format
// suffix that selects the default rule: that reading stands for a route of the stem serving the
// suffixed path, which matters when a rule names the stem ("/admin.json" must satisfy the rule
// for "/admin"); the default rule covers every stem, and would judge every public file
// ("/favicon.ico" as "/favicon") by its own terms.
func (p *Policy) EachReading(in *Input, fn func(method string, rd reqpath.Reading, rule *Rule, matchErr error)) {
	readings := []reqpath.Reading{{Path: in.Path.Canonical}}
	if len(p.Rules) > 0 {
		var buf [reqpath.MaxReadings]reqpath.Reading // zeroed only where a reading can select a rule
		readings = in.Path.Readings(buf[:0], p.Paths)
	}
	each := func(m string) {
		for _, rd := range readings {
			rule, err := p.match(in, m, rd)
			if rd.NoSuffix && rule == p.Default {
				continue
			}
			fn(m, rd, rule, err)
		}
	}
	methods := in.Methods()
	for _, m := range methods {
		if m != anyOtherMethod || !p.exprReadsMethod {
			each(m)
			continue
		}
		// An expression reads the method: "any other" is each method it may be.
		for _, o := range otherMethods {
			if !slices.Contains(methods, o) {
				each(o)
			}
		}
	}
}

// otherMethods are the methods a form body's _method may name, for expressions that read the
// method: Rack::MethodOverride's list (Rails), which Symfony's and Laravel's cover.
var otherMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "LINK", "UNLINK"}

// RuleReading is one reading of a request and the rule it selects (see Explain).
type RuleReading struct {
	Method string
	reqpath.Reading
	Rule string
	// MatchErr is the error of a match expression that could not be evaluated.
	MatchErr error
}

// Explain returns the canonical path of r and each of its readings with the rule it selects,
// as the decision judges them at now; or the refusal of r's path or host.
func (p *Policy) Explain(r *Request, now time.Time) (string, []RuleReading, error) {
	in, err := p.NewInput(r, now, 0)
	if err != nil {
		return "", nil, err
	}
	var out []RuleReading
	p.EachReading(in, func(m string, rd reqpath.Reading, rule *Rule, merr error) {
		out = append(out, RuleReading{Method: m, Reading: rd, Rule: rule.Name, MatchErr: merr})
	})
	return in.Path.Canonical, out, nil
}

// NewInput reads r as the rules do at now, or says why it cannot be judged: its path
// (reqpath), host (reqhost) or methods (ErrMethodOverrides).
func (p *Policy) NewInput(r *Request, now time.Time, leeway time.Duration) (*Input, error) {
	path, err := reqpath.Parse(r.Path)
	if err != nil {
		return nil, err
	}
	host, err := reqhost.Parse(r.Host)
	if err != nil {
		return nil, err
	}
	methods, ok := p.Methods(nil, r)
	if !ok {
		return nil, ErrMethodOverrides
	}
	in := p.Input(r, host.Name, methods, path, now, leeway)
	return &in, nil
}

// match returns the first rule covering in's request read with method and path reading rd, or
// the default rule; and the error of a match expression of the rule, which selected it.
func (p *Policy) match(in *Input, method string, rd reqpath.Reading) (*Rule, error) {
	for _, rule := range p.Rules {
		if ok, err := rule.match(in, method, rd); ok {
			return rule, err
		}
	}
	return p.Default, nil
}

// Reasons a valid token is refused by a rule (403).
var (
	ErrInsufficientScope = &token.Reason{Code: "insufficient_scope", Description: "The access token lacks a required scope"}
	ErrClaimMismatch     = &token.Reason{Code: "claim_mismatch", Description: "The access token lacks a required claim"}
	ErrIssuerNotAllowed  = &token.Reason{Code: "issuer_not_allowed", Description: "The issuer is not accepted for this resource"}
	ErrAudienceForRoute  = &token.Reason{Code: "audience_not_allowed", Description: "The audience is not accepted for this resource"}
)

// Check applies the rule's requirements to verified claims: nil when they hold, otherwise the
// reason, the scopes to name in the challenge, and a detail for logs.
func (rule *Rule) Check(c *token.Claims) (reason *token.Reason, scope, detail string) {
	if len(rule.Issuers) > 0 && !slices.Contains(rule.Issuers, c.IssuerName) {
		return ErrIssuerNotAllowed, "", fmt.Sprintf("issuer %q not in %q", c.IssuerName, rule.Issuers)
	}
	if len(rule.Audiences) > 0 && !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(rule.Audiences, a) }) {
		return ErrAudienceForRoute, "", fmt.Sprintf("aud %q not in %q", c.Audience, rule.Audiences)
	}
	for _, s := range rule.Scopes {
		if !c.HasScope(s) {
			return ErrInsufficientScope, strings.Join(rule.Scopes, " "), "missing scope " + s
		}
	}
	if len(rule.AnyScopes) > 0 && !slices.ContainsFunc(rule.AnyScopes, c.HasScope) {
		return ErrInsufficientScope, strings.Join(rule.AnyScopes, " "), fmt.Sprintf("none of the scopes %q", rule.AnyScopes)
	}
	if len(rule.Claims) > 0 {
		all, err := c.All()
		if err != nil {
			return ErrClaimMismatch, "", err.Error()
		}
		for _, req := range rule.Claims {
			if !req.holds(all) {
				return ErrClaimMismatch, "", "claim " + req.Claim + " does not satisfy the rule"
			}
		}
	}
	return nil, "", ""
}

func (req *ClaimRequirement) holds(claims map[string]any) bool {
	v, present := lookupClaim(claims, req.Claim)
	if req.Exists != nil {
		return present == *req.Exists
	}
	if !present {
		return false
	}
	switch {
	case req.Equals != nil:
		return jsonEqual(v, req.Equals)
	case req.OneOf != nil:
		return slices.ContainsFunc(req.OneOf, func(w any) bool { return jsonEqual(v, w) })
	case req.Contains != nil:
		return containsValue(v, req.Contains)
	case req.ContainsAny != nil:
		return slices.ContainsFunc(req.ContainsAny, func(w any) bool { return containsValue(v, w) })
	}
	return false
}

func lookupClaim(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true // a claim whose name has dots (e.g. a URL) wins over a path
	}
	return walkClaims(claims, strings.Split(name, "."))
}

// walkClaims follows a path of names through nested objects.
func walkClaims(claims map[string]any, path []string) (any, bool) {
	var cur any = claims
	for _, part := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// containsValue: an array claim contains an equal element; a string claim is a space-separated
// list (the scope convention) that contains the value.
func containsValue(claim, want any) bool {
	switch c := claim.(type) {
	case []any:
		return slices.ContainsFunc(c, func(e any) bool { return jsonEqual(e, want) })
	case string:
		w, ok := want.(string)
		return ok && slices.Contains(strings.Fields(c), w)
	}
	return false
}

// jsonEqual compares a JSON-decoded claim with a policy value, which the loader normalised to
// its JSON form: numbers by value (YAML's 1 equals JSON's 1.0 and 1e0), the rest exactly.
func jsonEqual(claim, want any) bool {
	switch c := claim.(type) {
	case json.Number:
		w, ok := want.(json.Number)
		return ok && numberEqual(c, w)
	case []any:
		w, ok := want.([]any)
		return ok && slices.EqualFunc(c, w, jsonEqual)
	case map[string]any:
		w, ok := want.(map[string]any)
		if !ok || len(c) != len(w) {
			return false
		}
		for k, v := range c {
			if wv, ok := w[k]; !ok || !jsonEqual(v, wv) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(claim, want)
}

// numberPrecision is the precision numbers are compared at: exact for integers of up to about
// 300 digits, far beyond any id.
const numberPrecision = 1024

func numberEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, _, errA := big.ParseFloat(string(a), 10, numberPrecision, big.ToNearestEven)
	y, _, errB := big.ParseFloat(string(b), 10, numberPrecision, big.ToNearestEven)
	return errA == nil && errB == nil && x.Cmp(y) == 0
}

// normalize gives a policy value the form Claims.All decodes claims to.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return v
	}
	return out
}
