package authz

import (
	"errors"
	"slices"

	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
)

// Reason is why a token was refused or could not be checked. Code is stable (logs, metrics);
// Description is safe to show the client in error_description. Every refusal wraps exactly one
// Reason; the table in decide maps each to a decision.
type Reason struct {
	Code        string
	Description string
}

func (r *Reason) Error() string { return r.Description }

// The reasons a token is refused. Descriptions are short, fixed strings: they go into
// WWW-Authenticate, so they never contain quotes or anything taken from the request.
var (
	ErrNoCredentials = &Reason{"no_token", "An access token is required"}
	ErrMalformed     = &Reason{"malformed_token", "The access token is malformed"}
	// ErrAmbiguousClaims: two claim names (at any depth) are equal but for case, or repeated;
	// readers of the claims would disagree on which one counts.
	ErrAmbiguousClaims = &Reason{"ambiguous_claim_names", "The access token has claim names that differ only in case"}
	ErrTooLarge        = &Reason{"token_too_large", "The access token is too large"}
	ErrAlgorithm       = &Reason{"alg_not_allowed", "The signing algorithm is not allowed"}
	ErrNoKeyID         = &Reason{"missing_kid", "The access token has no key id"}
	ErrForbiddenHdr    = &Reason{"forbidden_header", "The access token header is not acceptable"}
	ErrTokenType       = &Reason{"wrong_token_type", "The token is not an access token (typ at+jwt)"}
	ErrUnknownKey      = &Reason{"unknown_kid", "The signing key is unknown"}
	ErrSignature       = &Reason{"bad_signature", "The signature is invalid"}
	ErrIssuer          = &Reason{"wrong_issuer", "The issuer is not accepted"}
	ErrAudience        = &Reason{"wrong_audience", "The audience is not accepted"}
	ErrNoExpiry        = &Reason{"missing_exp", "The access token has no expiry"}
	ErrExpired         = &Reason{"token_expired", "The access token expired"}
	ErrNotYetValid     = &Reason{"token_not_yet_valid", "The access token is not yet valid"}
	ErrIssuedInFuture  = &Reason{"iat_in_future", "The access token was issued in the future"}
	ErrClientID        = &Reason{"client_not_allowed", "The client is not allowed"}
	ErrKeysNotLoaded   = &Reason{"keys_not_loaded", "The signing keys are not loaded yet"}
	// ErrKeyNotFetched: an unknown kid that may name a key published since the key set was
	// fetched, which may not be fetched again yet. 503: the client retries; a token signed by
	// a freshly rotated key is never called invalid because a forged kid spent the refetch.
	ErrKeyNotFetched = &Reason{"kid_not_yet_fetched", "The signing key is not known yet; retry shortly"}
)

// The reasons a request is refused before any rule or token is considered (400
// invalid_request): it cannot be judged as the upstream would read it.
var (
	ErrMultipleCredentials = &Reason{"multiple_credentials", "The request has more than one Authorization header"}
	// ErrMethodOverrides: the request names more methods to run as (override headers, _method
	// parameters) than it can be judged under.
	ErrMethodOverrides = &Reason{"method_overrides", "The request names too many method overrides"}
	// ErrInvalidHost: the Host is not a host name, address or [IPv6] with an optional numeric
	// port, so proxies may route it to another host than the one a rule would judge.
	ErrInvalidHost = &Reason{"invalid_host", "The request host is not a valid host name and port"}
	// ErrRequestSource: the HTTP decision API could not tell which request to judge from the
	// proxy's headers (missing, or another proxy's set present too).
	ErrRequestSource = &Reason{"request_source", "The proxy did not say which request to authorize"}
)

// PathReasons are the reasons for the path refusals (reqpath), in reqpath.Refusals' order;
// each code is "path_" and the refusal's.
var PathReasons = func() []*Reason {
	var out []*Reason
	for _, r := range reqpath.Refusals {
		out = append(out, &Reason{"path_" + r.Code, r.Description})
	}
	return out
}()

// pathReason is the Reason for a path refusal.
func pathReason(err error) *Reason {
	var r *reqpath.Refusal
	if errors.As(err, &r) {
		if i := slices.Index(reqpath.Refusals, r); i >= 0 {
			return PathReasons[i]
		}
	}
	return ErrPathRefused
}

// ErrPathRefused stands for a path refusal reqpath does not list (none today).
var ErrPathRefused = &Reason{"path_refused", "The request path is not acceptable"}

// reasonOf returns the Reason an error wraps, or ErrMalformed for anything unexpected, so that
// an unforeseen error still denies.
func reasonOf(err error) *Reason {
	var r *Reason
	if errors.As(err, &r) {
		return r
	}
	return ErrMalformed
}
