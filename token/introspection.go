package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/platformauth/envoy-okta-authz/internal/strictjson"
	"github.com/platformauth/envoy-okta-authz/token/introspect"
)

// IntrospectionMode says which of an issuer's tokens are introspected (RFC 7662).
type IntrospectionMode string

// The introspection modes.
const (
	// IntrospectOff verifies JWTs locally and refuses anything else (the default).
	IntrospectOff IntrospectionMode = "off"
	// IntrospectOpaque verifies JWTs locally and sends every token that is not a compact JWS to
	// the issuer's introspection endpoint.
	IntrospectOpaque IntrospectionMode = "opaque"
	// IntrospectAlways also introspects every JWT that verified locally (a forged or expired one
	// never reaches the issuer), so that a revoked token is refused within the cache's TTL.
	IntrospectAlways IntrospectionMode = "always"
)

// IntrospectionModes lists the modes.
var IntrospectionModes = []IntrospectionMode{IntrospectOff, IntrospectOpaque, IntrospectAlways}

// Introspection is how an issuer's tokens are introspected.
type Introspection struct {
	Mode   IntrospectionMode
	Client *introspect.Client
}

// takesOpaque reports whether the issuer is asked about tokens that are not JWTs.
func (in *Introspection) takesOpaque() bool {
	return in != nil && (in.Mode == IntrospectOpaque || in.Mode == IntrospectAlways)
}

// The reasons introspection refuses a token or cannot tell.
var (
	// ErrTokenInactive: the issuer says the token is not active — revoked, expired, or never
	// issued (RFC 7662 §2.2).
	ErrTokenInactive = &Reason{Code: "token_inactive", Description: "The access token is not active"}
	// ErrIntrospectionUnavailable: the issuer's introspection endpoint could not answer (down,
	// slow, rate-limiting, refusing this service's credentials). 503: the token may be fine.
	ErrIntrospectionUnavailable = &Reason{Code: "introspection_unavailable", Description: "The access token cannot be checked right now"}
	// ErrNotAccessToken: the issuer says the token is a refresh or ID token.
	ErrNotAccessToken = &Reason{Code: "not_an_access_token", Description: "The token is not an access token"}
)

// introspectedKeyID stands in Claims.KeyID for claims that introspection vouched for.
const introspectedKeyID = "introspection"

// looksLikeJWS reports whether token has the shape of a compact JWS: three non-empty parts.
// Anything else is an opaque token, which only introspection can read.
func looksLikeJWS(token string) bool {
	_, _, _, ok := splitCompact(token)
	return ok
}

// verifyOpaque asks the one issuer that takes opaque tokens. An opaque token names no issuer,
// so it is never sent to another issuer's endpoint to "try".
func (v *Verifier) verifyOpaque(ctx context.Context, token string) (*Claims, error) {
	is := v.opaque
	if is == nil {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	if len(token) > MaxTokenBytes {
		return nil, ErrTooLarge
	}
	r, err := is.Introspection.Client.Introspect(ctx, token)
	return v.judgeAnswer(is, token, r, err)
}

// judgeAnswer turns an introspection call's outcome into the claims it says, held to the
// issuer's rules: a failed call is ErrIntrospectionUnavailable, an inactive answer
// ErrTokenInactive, and a malformed one is forgotten, so that the next request asks again.
func (v *Verifier) judgeAnswer(is *Issuer, token string, r *introspect.Result, err error) (*Claims, error) {
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	if !r.Active {
		return nil, ErrTokenInactive
	}
	c, err := introspectedClaims(is, r)
	if err != nil {
		is.Introspection.Client.Forget(token)
		return nil, err
	}
	if err := v.checkIntrospected(is, c, r); err != nil {
		return c, err
	}
	return c, nil
}

// introspectedClaims reads an active response's members as a token's claims: the response is
// what the issuer vouches for (x-authz-claims forwards it). They are decoded once per cached
// result. An answer whose members are not what they must be (iat a string, scope a list, cid
// and client_id naming two clients, token_type no string) is the endpoint failing to answer,
// not a verdict on the token: ErrIntrospectionUnavailable, so the client gets 503, not a 401
// that calls its token bad; the caller drops the cached answer so that the next request asks
// again.
func introspectedClaims(is *Issuer, r *introspect.Result) (*Claims, error) {
	if c, ok := r.Memo.Load().(*Claims); ok {
		return c, nil
	}
	c, err := decodeClaims(r.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: the answer's members: %v", ErrIntrospectionUnavailable, err)
	}
	for _, member := range []string{"token_type", "token_use"} {
		if raw, ok := r.Members[member]; ok {
			if _, ok := strictjson.String(raw); !ok {
				return nil, fmt.Errorf("%w: the answer's %s is not a string", ErrIntrospectionUnavailable, member)
			}
		}
	}
	c.intern(is, introspectedKeyID)
	r.Memo.Store(c)
	return c, nil
}

// checkIntrospected holds an active response to the rules a JWT is held to, for the members it
// has (RFC 7662 makes all but active optional): exp, nbf and iat with the leeway; iss the
// issuer; aud one of the accepted audiences; the client in the allow-list (which needs the
// member); and not a refresh or ID token.
func (v *Verifier) checkIntrospected(is *Issuer, c *Claims, r *introspect.Result) error {
	has := func(name string) bool { _, ok := r.Members[name]; return ok }
	switch {
	case has("iss") && c.Issuer != is.identifier():
		return fmt.Errorf("%w: %q is not the issuer identifier %q", ErrIssuer, c.Issuer, is.identifier())
	case has("aud") && !is.acceptsAudience(c.Audience):
		return fmt.Errorf("%w: %q", ErrAudience, c.Audience)
	}
	if err := v.checkLifetimeAndClient(is, c); err != nil {
		return err
	}
	for _, member := range []string{"token_type", "token_use"} {
		if raw, ok := r.Members[member]; ok {
			s, _ := strictjson.String(raw) // a string: introspectedClaims checked
			if isRefreshOrIDToken(s) {
				return fmt.Errorf("%w: %s %q", ErrNotAccessToken, member, s)
			}
		}
	}
	return nil
}

// isRefreshOrIDToken reports whether a token_type (RFC 7662, RFC 8693 URIs) or Hydra's
// token_use names a token that must not pass as an access token.
func isRefreshOrIDToken(s string) bool {
	s = strings.ToLower(s)
	s = strings.TrimPrefix(s, "urn:ietf:params:oauth:token-type:")
	return s == "refresh_token" || s == "id_token"
}

// introspectJWT asks the issuer about a JWT that verified locally (IntrospectAlways): inactive
// refuses it; an active answer may narrow it and never widens it. Narrowed are the scopes (the
// answer's scp and scope, when it has either: the token keeps those of its own the answer
// also names) and the binding (a cnf in the answer binds a bearer JWT; one naming another key
// than the JWT's refuses it); an earlier exp, or anything else checkIntrospected refuses,
// refuses the token. The narrowed claims' Raw is the JWT's payload with those members
// rewritten, so claim rules, claim headers and x-authz-claims see what the scopes say. The
// returned claims are c itself when the answer changes nothing (the front ends key memoised
// answers by the claims).
func (v *Verifier) introspectJWT(ctx context.Context, is *Issuer, token string, c *Claims) (*Claims, error) {
	r, err := is.Introspection.Client.IntrospectVerified(ctx, token)
	said, err := v.judgeAnswer(is, token, r, err)
	if err != nil {
		return c, err
	}
	scopes, cnf := c.Scopes, c.Cnf
	_, hasScp := r.Members["scp"]
	_, hasScope := r.Members["scope"]
	if hasScp || hasScope {
		scopes = slices.DeleteFunc(slices.Clone(c.Scopes), func(s string) bool { return !said.HasScope(s) })
	}
	switch {
	case said.Cnf == nil:
	case cnf == nil:
		cnf = said.Cnf
	case *cnf != *said.Cnf:
		return c, fmt.Errorf("%w: the token and the introspection answer name different confirmation keys", ErrAmbiguousClaims)
	}
	if len(scopes) == len(c.Scopes) && cnf == c.Cnf {
		return c, nil
	}
	raw, err := narrowedPayload(c.Raw, scopes, r.Members["cnf"], cnf != c.Cnf)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &Claims{Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience, ClientID: c.ClientID,
		UserID: c.UserID, Scopes: scopes, ID: c.ID, KeyID: c.KeyID, IssuerName: c.IssuerName, Expiry: c.Expiry,
		IssuedAt: c.IssuedAt, NotBefore: c.NotBefore, ACR: c.ACR, AuthTime: c.AuthTime, Cnf: cnf, Raw: raw}, nil
}

// narrowedPayload rewrites a verified payload's scope members to hold only scopes (scp keeps
// its shape, a list or a string; scope stays a space-separated string), and adds the answer's
// cnf when bind is set. Every other member is kept as signed.
func narrowedPayload(payload []byte, scopes []string, cnf []byte, bind bool) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	member := func(name string, value []byte) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		n, _ := json.Marshal(name)
		b.Write(n)
		b.WriteByte(':')
		b.Write(value)
	}
	err := strictjson.Members(payload, func(name, value []byte) error {
		switch string(name) {
		case "scp":
			if len(value) > 0 && value[0] == '[' {
				value, _ = json.Marshal(scopes)
			} else {
				value, _ = json.Marshal(strings.Join(scopes, " "))
			}
		case "scope":
			value, _ = json.Marshal(strings.Join(scopes, " "))
		case "cnf":
			if bind {
				return errors.New("a payload with a cnf was to get another")
			}
		}
		member(string(name), value)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if bind {
		member("cnf", cnf)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// errTwoOpaqueIssuers refuses a configuration in which an opaque token could go to either of
// two issuers.
var errTwoOpaqueIssuers = errors.New("more than one issuer introspects opaque tokens (introspection opaque or always): an opaque token names no issuer, so it could not be told which to ask; keep it on one")
