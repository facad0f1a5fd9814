package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// Identity is what an allow forwards upstream about the verified token, besides the fixed
// identity headers (subject, client id, user id, scopes). It is resolved per rule at load time:
// the rule's identity section over the file's over the flags' over the defaults.
type Identity struct {
	// Claims are the configured claim headers.
	Claims []ClaimHeader
	// ClaimsHeader sends the whole verified payload in x-authz-claims (default on).
	ClaimsHeader bool
	// ForwardAuthorization keeps the Authorization (and DPoP) header for the upstream; off by
	// default, the upstream gets the identity headers instead of a token it could replay.
	ForwardAuthorization bool
	// Metadata are claims put into Envoy's dynamic metadata (for rate limit, RBAC, access log).
	Metadata []ClaimPath
}

// ClaimHeader sends a claim's value in a header.
type ClaimHeader struct {
	Header string // lower-case
	Claim  ClaimPath
	// Separator joins an array of scalars (default ",").
	Separator string
}

// ClaimPath names a claim: a top-level claim, or a path into objects.
type ClaimPath struct {
	// Name is the path as written: "email", "address.country", or a claim whose name holds
	// dots (e.g. "https://example.com/tenant"), which is looked up whole first.
	Name string
	// Segments, when set, is the path as a list of names, none split at dots (for a claim
	// whose name holds dots inside an object).
	Segments []string
}

func (p ClaimPath) String() string {
	if p.Segments != nil {
		return strings.Join(p.Segments, " › ")
	}
	return p.Name
}

// lookup finds the claim in decoded claims.
func (p ClaimPath) lookup(claims map[string]any) (any, bool) {
	if p.Segments == nil {
		return lookupClaim(claims, p.Name)
	}
	return walkClaims(claims, p.Segments)
}

// MaxClaimHeaderBytes bounds a claim header's value: a longer value is refused, never cut.
const MaxClaimHeaderBytes = 4096

// ErrClaimUnforwardable: a claim a header carries cannot go in a header (control characters,
// or too long). The request is refused rather than forwarded with a broken or cut identity.
var ErrClaimUnforwardable = &Reason{"claim_unforwardable", "A claim of the access token cannot be forwarded"}

// renderClaim writes a claim's value for a header: a string as it is; a number or boolean in its
// JSON form; an array of scalars joined with sep; an object (or an array holding one) as compact
// JSON. A null, an empty string and an empty array are absent: proxies disagree on an empty
// header (nginx's proxy_set_header removes it). It refuses values a header cannot carry.
func renderClaim(v any, sep string) (string, bool, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case string:
		s = x
	case bool, float64, json.Number:
		s = scalarString(x)
	case []any:
		parts := make([]string, 0, len(x))
		scalars := true
		for _, e := range x {
			switch e.(type) {
			case string, bool, float64, json.Number:
				parts = append(parts, scalarString(e))
			default:
				scalars = false
			}
		}
		if scalars {
			s = strings.Join(parts, sep)
			break
		}
		b, err := compactJSON(x)
		if err != nil {
			return "", false, err
		}
		s = b
	default:
		b, err := compactJSON(x)
		if err != nil {
			return "", false, err
		}
		s = b
	}
	if s == "" {
		return "", false, nil
	}
	if len(s) > MaxClaimHeaderBytes {
		return "", false, fmt.Errorf("%w: %d bytes, more than %d", ErrClaimUnforwardable, len(s), MaxClaimHeaderBytes)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", false, fmt.Errorf("%w: a control character", ErrClaimUnforwardable)
		}
	}
	return s, true, nil
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case json.Number:
		return x.String()
	}
	return ""
}

func compactJSON(v any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("%w: %v", ErrClaimUnforwardable, err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// renderedIdentity is an identity's claim headers and metadata for one token, kept on the
// token's Claims so that a token in steady use renders them once.
type renderedIdentity struct {
	identity *Identity
	headers  []Header
	metadata []Header
	err      error
}

// render returns the claim headers and metadata id asks for, from c.
func (id *Identity) render(c *Claims) (headers, metadata []Header, err error) {
	if len(id.Claims) == 0 && len(id.Metadata) == 0 {
		return nil, nil, nil
	}
	if r := c.rendered.Load(); r != nil && r.identity == id {
		return r.headers, r.metadata, r.err
	}
	r := &renderedIdentity{identity: id}
	r.headers, r.metadata, r.err = id.renderFresh(c)
	c.rendered.Store(r)
	return r.headers, r.metadata, r.err
}

func (id *Identity) renderFresh(c *Claims) (headers, metadata []Header, err error) {
	all, err := c.All()
	if err != nil {
		return nil, nil, err
	}
	for _, ch := range id.Claims {
		v, ok := ch.Claim.lookup(all)
		if !ok {
			continue
		}
		s, present, err := renderClaim(v, ch.Separator)
		if err != nil {
			return nil, nil, fmt.Errorf("claim %s for %s: %w", ch.Claim, ch.Header, err)
		}
		if present {
			headers = append(headers, Header{ch.Header, s})
		}
	}
	for _, p := range id.Metadata {
		v, ok := p.lookup(all)
		if !ok {
			continue
		}
		s, present, err := renderClaim(v, ",")
		if err != nil {
			return nil, nil, fmt.Errorf("claim %s for metadata: %w", p, err)
		}
		if present {
			metadata = append(metadata, Header{p.String(), s})
		}
	}
	return headers, metadata, nil
}

// headerName is what a configured header may be called: lower-case letters, digits and dashes.
// Narrower than HTTP allows on purpose: nginx drops names with "_" (and CGI-style upstreams read
// "_" as "-"), and its $upstream_http_* variables cannot tell "." or other punctuation from "-",
// so two such names could copy one header's value into the other.
var headerName = regexp.MustCompile("^[a-z0-9]+(-[a-z0-9]+)*$")

// reservedHeaders may not carry claims: hop-by-hop headers, headers that frame or route the
// request, credentials, and what the proxies use themselves.
var reservedHeaders = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
	"te", "trailer", "proxy-authenticate", "proxy-authorization", "host", "authorization", "dpop",
	"content-length", "content-type", "content-encoding", "cookie", "set-cookie", "expect", "forwarded",
	"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-uri", "x-forwarded-method",
	"x-original-uri", "x-original-method", "x-original-host", "x-request-id", "www-authenticate",
	HeaderSubject, HeaderClientID, HeaderUserID, HeaderScopes, HeaderClaims}

// checkHeaderName says why name cannot carry a claim, or nil.
func checkHeaderName(name string) error {
	switch {
	case !headerName.MatchString(name):
		return fmt.Errorf("header %q must be lower-case letters, digits and single dashes (x-user-email)", name)
	case slices.Contains(reservedHeaders, name):
		return fmt.Errorf("header %q is reserved (hop-by-hop, framing, credentials, a proxy's own, or a fixed identity header)", name)
	case strings.HasPrefix(name, "x-envoy-"), strings.HasPrefix(name, "x-decision"):
		return fmt.Errorf("header %q is in a namespace Envoy or the service use", name)
	}
	return nil
}

// identityNames are the lower-case names of every identity header a policy sets: the fixed
// x-authz-* ones are matched by prefix, the configured claim headers by name. A client's copy of
// any of them never reaches the upstream.
type identityNames map[string]bool

// has reports whether a lower-case header name is an identity header.
func (n identityNames) has(name string) bool {
	return strings.HasPrefix(name, IdentityHeaderPrefix) || n[name]
}

// hasFold is has for a name in any case (net/http's canonical keys), without lower-casing
// every header of every request.
func (n identityNames) hasFold(name string) bool {
	if len(name) >= len(IdentityHeaderPrefix) && strings.EqualFold(name[:len(IdentityHeaderPrefix)], IdentityHeaderPrefix) {
		return true
	}
	for k := range n {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

var errNoClaim = errors.New("a claim header needs header: and claim:")

// renderedSlot holds a token's last rendered identity (a field of Claims).
type renderedSlot = atomic.Pointer[renderedIdentity]

// fixedMetadata are the dynamic metadata keys every decision sets (LogFields): configured
// metadata claims may not take them.
var fixedMetadata = []string{"decision", "reason", "rule", "dry_run_would_be", "sub", "cid", "jti"}

// ParseClaimHeaders reads the --claim-headers flag: comma-separated header=claim pairs
// (x-user-email=email,x-user-country=address.country), arrays joined with ",". They are checked
// as the policy file's claims are.
func ParseClaimHeaders(s string) ([]ClaimHeader, error) {
	spec := identitySpec{Claims: []claimHeaderSpec{}}
	var errs []error
	for pair := range strings.SplitSeq(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		header, claim, ok := strings.Cut(pair, "=")
		header, claim = strings.ToLower(strings.TrimSpace(header)), strings.TrimSpace(claim)
		if !ok || header == "" || claim == "" {
			errs = append(errs, fmt.Errorf("%q is not header=claim", pair))
			continue
		}
		spec.Claims = append(spec.Claims, claimHeaderSpec{Header: header, Claim: claimPathSpec{ClaimPath{Name: claim}}})
	}
	id, idErrs := spec.over(DefaultIdentity(), "claim headers")
	return id.Claims, errors.Join(append(errs, idErrs...)...)
}
