package authz

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// RetryAfterSeconds is sent with 503 while no key set is loaded.
const RetryAfterSeconds = "5"

// Header is one header name and value.
type Header struct{ Name, Value string }

// HTTPStatus is the status the client gets (200 for Allow).
func (d *Decision) HTTPStatus() int { return d.Outcome.answer().status }

// UpstreamHeaders are the identity headers for the upstream request on Allow: subject, client id,
// user id (when present), scopes (space-separated), the verified claims (base64url JSON) unless
// the rule's identity turns them off, and the rule's claim headers. The slice is shared: callers
// must not modify it.
func (d *Decision) UpstreamHeaders() []Header { return d.upstream().upstream }

// UpstreamHTTP is UpstreamHeaders in net/http's form: canonical keys, and one-value slices with
// no spare capacity (an append copies instead of writing into the shared array). Shared too.
func (d *Decision) UpstreamHTTP() (keys []string, values [][]string) {
	u := d.upstream()
	u.httpOnce.Do(func() {
		n := len(u.upstream)
		u.httpForm = httpHeaders{make([]string, n), make([][]string, n)}
		vals := make([]string, n) // one array for every one-value slice
		for i, h := range u.upstream {
			key, ok := canonicalIdentityHeaders[h.Name]
			if !ok {
				key = http.CanonicalHeaderKey(h.Name)
			}
			vals[i] = h.Value
			u.httpForm.keys[i], u.httpForm.values[i] = key, vals[i:i+1:i+1]
		}
	})
	return u.httpForm.keys, u.httpForm.values
}

// httpHeaders are headers in net/http's form.
type httpHeaders struct {
	keys   []string
	values [][]string
}

// canonicalIdentityHeaders are the fixed identity headers' names in net/http's form, computed
// once rather than for every token.
var canonicalIdentityHeaders = func() map[string]string {
	m := map[string]string{}
	for _, h := range policy.FixedIdentityHeaders {
		m[h] = http.CanonicalHeaderKey(h)
	}
	return m
}()

var noUpstream = &derived{}

// upstream is what the allow forwards: derived when the deciding rule judged, or now for a
// dry-run allow (the default identity's headers).
func (d *Decision) upstream() *derived {
	switch {
	case d.Outcome != Allow || d.Claims == nil:
		return noUpstream
	case d.derived != nil:
		return d.derived
	}
	return derive(d.identity, d.Claims)
}

// upstreamHeaders builds the upstream headers of an allow under id (nil: the default).
func upstreamHeaders(id *policy.Identity, c *token.Claims, claimHeaders []Header) []Header {
	hs := make([]Header, 0, 5+len(claimHeaders))
	hs = append(hs, Header{policy.HeaderSubject, c.Subject}, Header{policy.HeaderClientID, c.ClientID})
	if c.UserID != "" {
		hs = append(hs, Header{policy.HeaderUserID, c.UserID})
	}
	hs = append(hs, Header{policy.HeaderScopes, strings.Join(c.Scopes, " ")})
	if id == nil || id.ClaimsHeader {
		hs = append(hs, Header{policy.HeaderClaims, base64.RawURLEncoding.EncodeToString(c.Raw)})
	}
	return slices.Clip(append(hs, claimHeaders...))
}

// CredentialHeaders are removed from an allowed request unless the rule forwards the token:
// the upstream gets the identity, not a token it could replay elsewhere.
var CredentialHeaders = []string{"authorization", "dpop"}

// RemovedHeaders are the request headers an allowed request must lose: the client's copies of
// identity headers the decision does not set (clientSent, lower-case), and the credentials
// unless the rule forwards them — every header the policy reads a token from too, and the
// Cookie header when the policy's token cookies were its only cookies.
func (d *Decision) RemovedHeaders(upstream []Header, clientSent []string) []string {
	out := headersToRemove(upstream, clientSent)
	if !d.removesToken() {
		return out
	}
	cookieGone := d.cookieChanged && d.upstreamCookie == ""
	if len(out) == 0 && len(d.tokenHeaders) == 0 && !cookieGone {
		return slices.Clip(CredentialHeaders) // the usual case: nothing to build
	}
	out = append(append(out, CredentialHeaders...), d.tokenHeaders...)
	if cookieGone {
		out = append(out, "cookie")
	}
	return out
}

// removesToken: an allow whose rule does not forward the token.
func (d *Decision) removesToken() bool {
	return d.Outcome == Allow && (d.identity == nil || !d.identity.ForwardAuthorization)
}

// UpstreamCookie is the Cookie header an allow sets on the upstream request when the request's
// held a cookie the policy reads a token from: the request's other cookies (ok false otherwise,
// and when none remains: then RemovedHeaders names cookie).
func (d *Decision) UpstreamCookie() (string, bool) {
	if !d.removesToken() || !d.cookieChanged || d.upstreamCookie == "" {
		return "", false
	}
	return d.upstreamCookie, true
}

// CookieChanged reports whether the upstream gets another Cookie header than the request's:
// UpstreamCookie, or none.
func (d *Decision) CookieChanged() bool { return d.removesToken() && d.cookieChanged }

// RemovedQueryParameter is the query parameter an allow removes from the upstream request (the
// token's), or "".
func (d *Decision) RemovedQueryParameter() string {
	if !d.removesToken() || d.Credential.Kind != token.InQuery {
		return ""
	}
	return d.Credential.Name
}

// headersToRemove returns the client-sent identity headers (lower-case names) that an allowed
// request must lose: those not among the upstream headers the decision sets. Headers it
// overwrites are left out, because removing one the decision also sets could drop ours,
// depending on the order the proxy applies the two lists. Linear in the headers a client sent
// (a set once there are more than a few): a request with thousands must not cost quadratic time.
func headersToRemove(upstream []Header, clientSent []string) []string {
	var out []string
	var seen map[string]bool
	for _, name := range clientSent {
		if slices.ContainsFunc(upstream, func(h Header) bool { return h.Name == name }) {
			continue
		}
		switch {
		case seen != nil:
			if seen[name] {
				continue
			}
			seen[name] = true
		case slices.Contains(out, name):
			continue
		case len(out) == 8:
			seen = make(map[string]bool, len(clientSent))
			for _, n := range out {
				seen[n] = true
			}
			seen[name] = true
		}
		out = append(out, name)
	}
	return out
}

// Challenges are what WWW-Authenticate names: the Bearer realm and, when the DPoP scheme is
// accepted, the DPoP proof algorithms (RFC 9449 §7.1's algs).
type Challenges struct {
	Realm    string
	DPoPAlgs string // space-separated; empty when DPoP is off
}

// ClientHeaders are the headers of a denial for the client: WWW-Authenticate on 400/401/403
// (RFC 6750 §3, RFC 9449 §7.1), Retry-After on 503, and the JSON body's content type. One
// WWW-Authenticate value carries every challenge (Figure 17 of RFC 9449), since proxies differ
// in how they pass a repeated header.
func (d *Decision) ClientHeaders(ch Challenges) []Header {
	if d.Outcome == Allow {
		return nil
	}
	hs := []Header{{"content-type", "application/json"}, {"cache-control", "no-store"}}
	bearer := fmt.Sprintf(`Bearer realm=%q`, ch.Realm)
	switch d.Outcome {
	case NoCredentials:
		if ch.DPoPAlgs != "" {
			bearer += fmt.Sprintf(`, DPoP algs=%q`, ch.DPoPAlgs)
		}
		return append(hs, Header{"www-authenticate", bearer})
	case Unavailable:
		return append(hs, Header{"retry-after", RetryAfterSeconds})
	}
	challenge := bearer
	if d.DPoP && ch.DPoPAlgs != "" {
		challenge = fmt.Sprintf(`DPoP algs=%q`, ch.DPoPAlgs)
	}
	challenge += fmt.Sprintf(`, error=%q, error_description=%q`, d.Outcome.answer().errCode, d.Reason.Description)
	if d.Outcome == InsufficientScope && d.Scope != "" {
		challenge += fmt.Sprintf(", scope=%q", d.Scope)
	}
	if s := d.StepUp; d.Outcome == InsufficientAuthentication && s != nil {
		// RFC 9470 §3: what the client must authenticate with, and how recently.
		if len(s.ACR) > 0 {
			challenge += fmt.Sprintf(", acr_values=%q", strings.Join(s.ACR, " "))
		}
		if s.MaxAge > 0 {
			challenge += fmt.Sprintf(", max_age=%d", s.MaxAgeSeconds())
		}
	}
	return append(hs, Header{"www-authenticate", challenge})
}

// LogFields are what a proxy's access log may record of the decision: decision, reason, rule,
// dry_run_would_be, and the token's sub, cid and jti — never the token. gRPC sends them as
// dynamic metadata, the HTTP API to Envoy as x-decision headers.
func (d *Decision) LogFields() []Header {
	fs := []Header{{"decision", d.Outcome.String()}}
	if d.Reason != nil {
		fs = append(fs, Header{"reason", d.Reason.Code})
	}
	if d.Rule != "" {
		fs = append(fs, Header{"rule", d.Rule})
	}
	if d.DryRun() {
		fs = append(fs, Header{"dry_run_would_be", d.WouldBe.Outcome.String()})
	}
	if c := d.Claims; c != nil {
		fs = append(fs, Header{"sub", c.Subject}, Header{"cid", c.ClientID}, Header{"jti", c.ID})
	}
	return fs
}

// MetadataFields are LogFields and, on Allow, the claims the rule's identity puts in metadata
// (for Envoy's rate limit, RBAC and access log).
func (d *Decision) MetadataFields() []Header {
	fs := d.LogFields()
	if d.derived != nil {
		fs = append(fs, d.derived.metadata...)
	}
	return fs
}

// Identity is what an allow by the deciding rule forwards (nil for other decisions): two
// decisions with the same claims and identity have the same upstream headers.
func (d *Decision) Identity() *policy.Identity { return d.identity }

// errorBody is the JSON body of a denial.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Scope       string `json:"scope,omitempty"`
}

// Body is the JSON body of a denial (nil on Allow).
func (d *Decision) Body() []byte {
	if d.Outcome == Allow {
		return nil
	}
	b := errorBody{Error: d.Outcome.answer().errCode, Description: d.Reason.Description}
	if d.Outcome == InsufficientScope {
		b.Scope = d.Scope
	}
	out, _ := json.Marshal(b) // cannot fail: a struct of strings
	return out
}
