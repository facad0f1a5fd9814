package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/platformauth/envoy-okta-authz/internal/reqhost"
	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
	"github.com/platformauth/envoy-okta-authz/policy/expr"
	"github.com/platformauth/envoy-okta-authz/policy/stepup"
	"github.com/platformauth/envoy-okta-authz/token"
)

// The policy file, as YAML carries it. Unknown keys are errors.
type policyFile struct {
	Issuers       []IssuerSpec      `yaml:"issuers"`
	DryRun        bool              `yaml:"dry_run"`
	UpstreamPaths upstreamPathsSpec `yaml:"upstream_paths"`
	Identity      *identitySpec     `yaml:"identity"`
	// Credentials are the places the rules read a token from, unless a rule says otherwise.
	Credentials []string   `yaml:"credentials"`
	Rules       []ruleSpec `yaml:"rules"`
	Default     *ruleSpec  `yaml:"default"`
}

// identitySpec is an identity section: the file's, or a rule's over it. What it leaves out
// comes from the level above.
type identitySpec struct {
	Claims               []claimHeaderSpec `yaml:"claims"`
	ClaimsHeader         *bool             `yaml:"claims_header"`
	ForwardAuthorization *bool             `yaml:"forward_authorization"`
	Metadata             []claimPathSpec   `yaml:"metadata"`
}

type claimHeaderSpec struct {
	Header    string        `yaml:"header"`
	Claim     claimPathSpec `yaml:"claim"`
	Separator *string       `yaml:"separator"`
}

// claimPathSpec is a claim's name — dotted into objects, a name with dots looked up whole first
// — or a list of names that are never split.
type claimPathSpec struct{ ClaimPath }

func (c *claimPathSpec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		c.Name = n.Value
		return nil
	case yaml.SequenceNode:
		return n.Decode(&c.Segments)
	}
	return fmt.Errorf("line %d: a claim is a name or a list of names", n.Line)
}

// over returns base with what spec sets, checking it; the line prefixes its errors.
func (spec *identitySpec) over(base Identity, where string) (Identity, []error) {
	if spec == nil {
		return base, nil
	}
	var errs []error
	out := base
	if spec.ClaimsHeader != nil {
		out.ClaimsHeader = *spec.ClaimsHeader
	}
	if spec.ForwardAuthorization != nil {
		out.ForwardAuthorization = *spec.ForwardAuthorization
	}
	if spec.Claims != nil {
		out.Claims = nil
		seen := map[string]bool{}
		for _, c := range spec.Claims {
			h := ClaimHeader{Header: c.Header, Claim: c.Claim.ClaimPath, Separator: ","}
			if c.Separator != nil {
				h.Separator = *c.Separator
			}
			switch {
			case c.Header == "" || c.Claim.Name == "" && len(c.Claim.Segments) == 0:
				errs = append(errs, fmt.Errorf("%s: %w", where, errNoClaim))
				continue
			case seen[c.Header]:
				errs = append(errs, fmt.Errorf("%s: header %q carries two claims", where, c.Header))
			}
			if err := checkHeaderName(c.Header); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
			if strings.ContainsAny(h.Separator, "\r\n\x00") {
				errs = append(errs, fmt.Errorf("%s: separator %q cannot go in a header", where, h.Separator))
			}
			seen[c.Header] = true
			out.Claims = append(out.Claims, h)
		}
	}
	if spec.Metadata != nil {
		out.Metadata = nil
		for _, m := range spec.Metadata {
			if m.Name == "" && len(m.Segments) == 0 {
				errs = append(errs, fmt.Errorf("%s: a metadata entry names a claim", where))
				continue
			}
			if slices.Contains(fixedMetadata, m.String()) {
				errs = append(errs, fmt.Errorf("%s: metadata %q is set already (decision, reason, rule, sub, cid, jti are always there)", where, m.String()))
				continue
			}
			out.Metadata = append(out.Metadata, m.ClaimPath)
		}
	}
	return out, errs
}

// upstreamPathsSpec says how the API behind the proxy may read a path besides its canonical
// form. Each reading left on makes a request also satisfy the rule that reading matches; all
// are on unless the file turns them off, which is safe whatever the upstream is.
type upstreamPathsSpec struct {
	CaseInsensitive *bool `yaml:"case_insensitive"`
	TrailingSlash   *bool `yaml:"trailing_slash"`
	PathParameters  *bool `yaml:"path_parameters"`
	FormatSuffix    *bool `yaml:"format_suffix"`
	// MethodOverride: the upstream may run a request under the method an X-HTTP-Method-Override
	// (or X-HTTP-Method, X-Method-Override) header, a _method query parameter or a form body's
	// _method names.
	MethodOverride *bool `yaml:"method_override"`
}

func orTrue(b *bool) bool { return b == nil || *b }

type ruleSpec struct {
	Name        string        `yaml:"name"`
	Match       matchSpec     `yaml:"match"`
	Public      bool          `yaml:"public"`
	Require     requireSpec   `yaml:"require"`
	Credentials []string      `yaml:"credentials"`
	Identity    *identitySpec `yaml:"identity"`
	DryRun      bool          `yaml:"dry_run"`
}

type matchSpec struct {
	Policy     string    `yaml:"policy"`
	Hosts      []string  `yaml:"hosts"`
	Methods    []string  `yaml:"methods"`
	Path       string    `yaml:"path"`
	PathPrefix string    `yaml:"path_prefix"`
	PathGlob   string    `yaml:"path_glob"`
	PathRegex  string    `yaml:"path_regex"`
	CEL        expr.Spec `yaml:"cel"`
}

func (m *matchSpec) empty() bool {
	return m.Policy == "" && len(m.Hosts) == 0 && len(m.Methods) == 0 && m.Path == "" &&
		m.PathPrefix == "" && m.PathGlob == "" && m.PathRegex == "" && len(m.CEL) == 0
}

type requireSpec struct {
	Scopes            []string    `yaml:"scopes"`
	AnyScopes         []string    `yaml:"any_scopes"`
	Claims            []claimSpec `yaml:"claims"`
	Issuers           []string    `yaml:"issuers"`
	Audiences         []string    `yaml:"audiences"`
	SenderConstrained string      `yaml:"sender_constrained"`
	CEL               expr.Spec   `yaml:"cel"`
	ACR               []string    `yaml:"acr"`
	MaxAge            *Duration   `yaml:"max_age"`
}

func (r *requireSpec) empty() bool {
	return len(r.Scopes) == 0 && len(r.AnyScopes) == 0 && len(r.Claims) == 0 && len(r.Issuers) == 0 &&
		len(r.Audiences) == 0 && r.SenderConstrained == "" && len(r.CEL) == 0 && len(r.ACR) == 0 && r.MaxAge == nil
}

type claimSpec struct {
	Claim       string `yaml:"claim"`
	Equals      any    `yaml:"equals"`
	OneOf       []any  `yaml:"one_of"`
	Contains    any    `yaml:"contains"`
	ContainsAny []any  `yaml:"contains_any"`
	Exists      *bool  `yaml:"exists"`
}

// MaxBytes caps a policy file.
const MaxBytes = 1 << 20

// Options are what a policy is loaded with besides its text.
type Options struct {
	// Issuers are the issuers configured outside the file (e.g. "default" for --issuer); rules
	// may name those and the file's own.
	Issuers []string
	// Identity is the identity the flags configure (DefaultIdentity when zero); the file's
	// identity section and each rule's go over it.
	Identity *Identity
}

// DefaultIdentity forwards the fixed identity headers and the whole payload, and keeps the
// token from the upstream.
func DefaultIdentity() Identity { return Identity{ClaimsHeader: true} }

// Default is the policy without a file: every route needs a valid token, and allows
// forward id (DefaultIdentity when nil).
func Default(id *Identity) *Policy {
	p := &Policy{Default: &Rule{Name: "default", Credentials: defaultPlaces}}
	p.setIdentities(id)
	return p
}

// defaultPlaces: a token comes in the Authorization header unless a rule or the file says more.
var defaultPlaces = []token.Place{token.Authorization}

// Load parses and validates a policy file with the default identity; see LoadWith.
func Load(data []byte, issuerNames []string) (*Policy, error) {
	return LoadWith(data, Options{Issuers: issuerNames})
}

// LoadWith parses and validates a policy file. Every problem is reported, each with its
// line.
func LoadWith(data []byte, opts Options) (*Policy, error) {
	issuerNames := opts.Issuers
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("policy: larger than %d bytes", MaxBytes)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("policy: %w", err) // not YAML: the parser's line is all there is
	}
	// Shape errors first, all of them; then what decoded is checked too, so one report has
	// every mistake.
	errs := shapeErrors(&doc)
	var f policyFile
	if len(errs) == 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("policy: %w", err)
		}
	} else if doc.Kind != 0 {
		_ = doc.Decode(&f) // best effort: the shape errors say what did not fit
	}
	lines := ruleLines(data)
	file := strings.Split(string(data), "\n")
	fail := func(line int, format string, a ...any) {
		errs = append(errs, fmt.Errorf("line %d: "+format, append([]any{line}, a...)...))
	}
	places, placeErrs := token.ParsePlaces(f.Credentials)
	for _, err := range placeErrs {
		fail(lines.credentials, "%v", err)
	}
	if places == nil {
		places = defaultPlaces
	}

	p := &Policy{DryRun: f.DryRun, Issuers: f.Issuers, MethodOverride: orTrue(f.UpstreamPaths.MethodOverride), Paths: reqpath.Options{
		CaseInsensitive: orTrue(f.UpstreamPaths.CaseInsensitive),
		TrailingSlash:   orTrue(f.UpstreamPaths.TrailingSlash),
		Parameters:      orTrue(f.UpstreamPaths.PathParameters),
		FormatSuffix:    orTrue(f.UpstreamPaths.FormatSuffix),
	}}
	known := map[string]bool{}
	for _, n := range issuerNames {
		known[n] = true
	}
	for i, is := range f.Issuers {
		line := lineAt(lines.issuers, i)
		switch {
		case is.Name == "":
			fail(line, "issuer: a name is required")
		case known[is.Name]:
			fail(line, "issuer %q: the name is already used", is.Name)
		}
		known[is.Name] = true
		if is.Issuer == "" {
			fail(line, "issuer %q: issuer (the URL) is required", is.Name)
		}
		if len(is.Audiences) == 0 {
			fail(line, "issuer %q: at least one audience is required", is.Name)
		}
		if len(is.Algs) == 0 {
			p.Issuers[i].Algs = []string{"RS256"}
		}
		for _, err := range is.Introspection.Check() {
			fail(line, "issuer %q: introspection: %v", is.Name, err)
		}
	}

	b := ruleBuilder{issuers: known, places: places, file: file}
	names := map[string]bool{}
	for i := range f.Rules {
		spec := &f.Rules[i]
		line := lineAt(lines.rules, i)
		if spec.Name == "" {
			spec.Name = fmt.Sprintf("rule-%d", i+1)
		}
		if names[spec.Name] {
			fail(line, "rule %q: the name is used twice", spec.Name)
		}
		names[spec.Name] = true
		if spec.Match.empty() && i < len(f.Rules)-1 {
			fail(line, "rule %q matches every request, so the rules after it can never match (use default: instead)", spec.Name)
		}
		rule, ruleErrs := b.build(spec, line)
		errs = append(errs, ruleErrs...)
		p.Rules = append(p.Rules, rule)
	}
	base := DefaultIdentity()
	if opts.Identity != nil {
		base = *opts.Identity
	}
	global, idErrs := f.Identity.over(base, fmt.Sprintf("line %d: identity", lines.identity))
	errs = append(errs, idErrs...)
	for i, spec := range f.Rules {
		id, idErrs := spec.Identity.over(global, fmt.Sprintf("line %d: rule %q: identity", lineAt(lines.rules, i), p.Rules[i].Name))
		errs = append(errs, idErrs...)
		p.Rules[i].identity = &id
	}
	p.Default = &Rule{Name: "default", identity: &global, Credentials: places}
	if f.Default != nil {
		if f.Default.Name == "" {
			f.Default.Name = "default"
		}
		if !f.Default.Match.empty() {
			fail(lines.def, "default: has no match (it covers what no rule matches)")
		}
		rule, ruleErrs := b.build(f.Default, lines.def)
		errs = append(errs, ruleErrs...)
		id, idErrs := f.Default.Identity.over(global, fmt.Sprintf("line %d: default: identity", lines.def))
		errs = append(errs, idErrs...)
		rule.identity = &id
		p.Default = rule
	}
	byLine(errs)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("policy:\n%w", err)
	}
	p.setIdentities(nil)
	p.hidden = map[string]bool{}
	for _, rule := range append(slices.Clip(p.Rules), p.Default) {
		for _, pl := range rule.Credentials {
			switch {
			case pl.Kind == token.InCookie && !slices.Contains(p.tokenCookies, pl.Name):
				p.tokenCookies = append(p.tokenCookies, pl.Name)
			case pl.Kind == token.InHeader && !p.hidden[pl.Name]:
				p.hidden[pl.Name] = true
				p.tokenHeaders = append(p.tokenHeaders, pl.Name)
			}
		}
		p.clock = p.clock || len(rule.MatchCEL) > 0 || len(rule.Conditions) > 0 || rule.StepUp != nil
		if slices.ContainsFunc(append(slices.Clip(rule.MatchCEL), rule.Conditions...), (*expr.Program).ReadsMethod) {
			// The method decides: the request is judged under every method it may run as.
			p.exprReadsMethod, p.MethodReadings = true, true
		}
		p.Paths.AlwaysFold = p.Paths.AlwaysFold || rule.paths.hasUpper()
		p.Paths.AlwaysSlash = p.Paths.AlwaysSlash || rule.paths.hasTrailingSlash()
		p.MethodReadings = p.MethodReadings || len(rule.Methods) > 0
		for _, m := range rule.Methods {
			if !slices.Contains(p.ruleMethods, m) {
				p.ruleMethods = append(p.ruleMethods, m)
			}
		}
	}
	return p, nil
}

// scopeToken is what may appear in a scope (RFC 6749 §3.3), and so in WWW-Authenticate.
var scopeToken = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]+$`)

var methodToken = regexp.MustCompile(`^[A-Z]+$`)

// ruleBuilder builds the rules of one file: the issuers they may name, the file's credential
// places, and its text (for the positions of expressions).
type ruleBuilder struct {
	issuers map[string]bool
	places  []token.Place
	file    []string
}

func (b *ruleBuilder) build(spec *ruleSpec, line int) (*Rule, []error) {
	issuers := b.issuers
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("line %d: rule %q: "+format, append([]any{line, spec.Name}, a...)...))
	}
	m, req := spec.Match, spec.Require
	rule := &Rule{
		Name: spec.Name, Line: line, Policy: m.Policy,
		Public: spec.Public, Scopes: req.Scopes, AnyScopes: req.AnyScopes, Issuers: req.Issuers,
		Audiences: req.Audiences, DryRun: spec.DryRun,
	}
	nPaths := 0
	for _, p := range []string{m.Path, m.PathPrefix, m.PathGlob, m.PathRegex} {
		if p != "" {
			nPaths++
		}
	}
	if nPaths > 1 {
		fail("path, path_prefix, path_glob and path_regex contradict each other: use one")
	}
	for _, p := range []string{m.Path, m.PathPrefix, m.PathGlob} {
		if p != "" && !strings.HasPrefix(p, "/") {
			fail("path %q must start with /", p)
		}
	}
	// Exact paths and prefixes are compared with the canonical request path, so they must be
	// canonical themselves, or they could never match.
	for _, p := range []string{m.Path, m.PathPrefix} {
		if !strings.HasPrefix(p, "/") {
			continue
		}
		switch c, err := reqpath.Parse(p); {
		case err != nil:
			fail("path %q: %v", p, err)
		case c.Canonical != p || strings.Contains(p, "?"):
			fail("path %q is not in canonical form: write %q (see Paths and proxies in the README)", p, c.Canonical)
		}
	}
	if m.PathGlob != "" {
		if _, err := path.Match(m.PathGlob, "/"); err != nil {
			fail("path_glob %q: %v", m.PathGlob, err)
		}
	}
	switch {
	case m.Path != "":
		rule.paths = newPathMatcher(pathExact, m.Path, nil)
	case m.PathPrefix != "":
		rule.paths = newPathMatcher(pathPrefix, m.PathPrefix, nil)
	case m.PathGlob != "":
		rule.paths = newPathMatcher(pathGlob, m.PathGlob, nil)
	case m.PathRegex != "":
		re, err := regexp.Compile(`^(?:` + m.PathRegex + `)$`)
		if err != nil {
			fail("path_regex %q: %v", m.PathRegex, err)
			break
		}
		rule.paths = newPathMatcher(pathRegex, "", re)
	}
	for _, h := range m.Hosts {
		// Matched without the port (a port written here is ignored, as it always was).
		host, err := reqhost.Parse(h)
		if err != nil || h == "" {
			fail("host %q is not a host name (letters, digits, - and _ in dot-separated labels, an IPv4 address or [IPv6])", h)
		}
		rule.Hosts = append(rule.Hosts, host.Name)
	}
	for _, meth := range m.Methods {
		u := strings.ToUpper(meth)
		if !methodToken.MatchString(u) {
			fail("method %q is not an HTTP method", meth)
		}
		rule.Methods = append(rule.Methods, u)
	}
	if spec.Public && !req.empty() {
		fail("public: true contradicts require: a public rule needs no token")
	}
	switch sc := SenderConstraint(req.SenderConstrained); sc {
	case "", SenderDPoP, SenderMTLS, SenderAny:
		rule.SenderConstrained = sc
	default:
		fail("sender_constrained %q is not dpop, mtls or any", req.SenderConstrained)
	}
	for _, s := range append(append([]string{}, req.Scopes...), req.AnyScopes...) {
		if !scopeToken.MatchString(s) {
			fail("scope %q is not a valid scope token", s)
		}
	}
	for _, name := range req.Issuers {
		if !issuers[name] {
			fail("issuer %q is not configured (known: %s)", name, strings.Join(sortedKeys(issuers), ", "))
		}
	}
	for _, c := range req.Claims {
		ops := 0
		for _, set := range []bool{c.Equals != nil, c.OneOf != nil, c.Contains != nil, c.ContainsAny != nil, c.Exists != nil} {
			if set {
				ops++
			}
		}
		switch {
		case c.Claim == "":
			fail("a claim requirement needs claim: (the claim's name)")
		case ops != 1:
			fail("claim %q: give exactly one of equals, one_of, contains, contains_any, exists", c.Claim)
		}
		rule.Claims = append(rule.Claims, ClaimRequirement{
			Claim: c.Claim, Equals: normalize(c.Equals), OneOf: normalizeAll(c.OneOf),
			Contains: normalize(c.Contains), ContainsAny: normalizeAll(c.ContainsAny), Exists: c.Exists,
		})
	}
	var exprErrs, stepErrs []error
	where := fmt.Sprintf("rule %q: ", spec.Name)
	rule.MatchCEL, exprErrs = m.CEL.Compile(expr.Match, where+"match.cel", b.file)
	errs = append(errs, exprErrs...)
	rule.Conditions, exprErrs = req.CEL.Compile(expr.Require, where+"require.cel", b.file)
	errs = append(errs, exprErrs...)
	if len(req.ACR) > 0 || req.MaxAge != nil {
		rule.StepUp, stepErrs = stepup.New(req.ACR, (*time.Duration)(req.MaxAge))
		for _, err := range stepErrs {
			fail("%v", err)
		}
	}
	places, placeErrs := token.ParsePlaces(spec.Credentials)
	for _, err := range placeErrs {
		fail("%v", err)
	}
	rule.Credentials = places
	if places == nil {
		rule.Credentials = b.places
	}
	return rule, errs
}

func normalizeAll(vs []any) []any {
	if vs == nil {
		return nil
	}
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = normalize(v)
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// policyLines are the lines where each rule, issuer, the default, the identity and the
// credentials start.
type policyLines struct {
	rules, issuers             []int
	def, identity, credentials int
}

func lineAt(lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return 0
}

func ruleLines(data []byte) policyLines {
	var pl policyLines
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return pl
	}
	doc := root.Content[0]
	for i := 0; i+1 < len(doc.Content); i += 2 {
		key, val := doc.Content[i], doc.Content[i+1]
		switch key.Value {
		case "rules":
			for _, item := range val.Content {
				pl.rules = append(pl.rules, item.Line)
			}
		case "issuers":
			for _, item := range val.Content {
				pl.issuers = append(pl.issuers, item.Line)
			}
		case "default":
			pl.def = val.Line
		case "identity":
			pl.identity = val.Line
		case "credentials":
			pl.credentials = val.Line
		}
	}
	return pl
}
