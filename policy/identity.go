package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The identity headers set on allowed requests for the upstream. Client-sent headers with the
// IdentityHeaderPrefix are always removed or overwritten, never passed through.
const (
	IdentityHeaderPrefix = "x-authz-"
	HeaderSubject        = "x-authz-subject"
	HeaderClientID       = "x-authz-client-id"
	HeaderUserID         = "x-authz-user-id"
	HeaderScopes         = "x-authz-scopes"
	HeaderClaims         = "x-authz-claims"
)

// FixedIdentityHeaders are the identity headers every allow may set, whatever the policy.
var FixedIdentityHeaders = []string{HeaderSubject, HeaderClientID, HeaderUserID, HeaderScopes, HeaderClaims}

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

// Lookup finds the claim in decoded claims (Claims.All).
func (p ClaimPath) Lookup(claims map[string]any) (any, bool) {
	if p.Segments == nil {
		return lookupClaim(claims, p.Name)
	}
	return walkClaims(claims, p.Segments)
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
