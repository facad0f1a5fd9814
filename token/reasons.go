package token

import "errors"

// Reason is why a token was refused or could not be checked. Code is stable (logs, metrics);
// Description is safe to show the client in error_description. Every refusal wraps exactly one
// Reason; the decision maps each to an answer.
type Reason struct {
	Code        string
	Description string
}

func (r *Reason) Error() string { return r.Description }

// The reasons a token is refused. Descriptions are short, fixed strings: they go into
// WWW-Authenticate, so they never contain quotes or anything taken from the request.
var (
	ErrNoCredentials = &Reason{Code: "no_token", Description: "An access token is required"}
	ErrMalformed     = &Reason{Code: "malformed_token", Description: "The access token is malformed"}
	// ErrAmbiguousClaims: two claim names (at any depth) are equal but for case, or repeated;
	// readers of the claims would disagree on which one counts.
	ErrAmbiguousClaims = &Reason{Code: "ambiguous_claim_names", Description: "The access token has claim names that differ only in case"}
	ErrTooLarge        = &Reason{Code: "token_too_large", Description: "The access token is too large"}
	ErrAlgorithm       = &Reason{Code: "alg_not_allowed", Description: "The signing algorithm is not allowed"}
	ErrNoKeyID         = &Reason{Code: "missing_kid", Description: "The access token has no key id"}
	ErrForbiddenHdr    = &Reason{Code: "forbidden_header", Description: "The access token header is not acceptable"}
	ErrTokenType       = &Reason{Code: "wrong_token_type", Description: "The token is not an access token (typ at+jwt)"}
	ErrUnknownKey      = &Reason{Code: "unknown_kid", Description: "The signing key is unknown"}
	ErrSignature       = &Reason{Code: "bad_signature", Description: "The signature is invalid"}
	ErrIssuer          = &Reason{Code: "wrong_issuer", Description: "The issuer is not accepted"}
	ErrAudience        = &Reason{Code: "wrong_audience", Description: "The audience is not accepted"}
	ErrNoExpiry        = &Reason{Code: "missing_exp", Description: "The access token has no expiry"}
	ErrExpired         = &Reason{Code: "token_expired", Description: "The access token expired"}
	ErrNotYetValid     = &Reason{Code: "token_not_yet_valid", Description: "The access token is not yet valid"}
	ErrIssuedInFuture  = &Reason{Code: "iat_in_future", Description: "The access token was issued in the future"}
	ErrClientID        = &Reason{Code: "client_not_allowed", Description: "The client is not allowed"}
	ErrKeysNotLoaded   = &Reason{Code: "keys_not_loaded", Description: "The signing keys are not loaded yet"}
	// ErrKeyNotFetched: an unknown kid that may name a key published since the key set was
	// fetched, which may not be fetched again yet. 503: the client retries; a token signed by
	// a freshly rotated key is never called invalid because a forged kid spent the refetch.
	ErrKeyNotFetched = &Reason{Code: "kid_not_yet_fetched", Description: "The signing key is not known yet; retry shortly"}
)

// ErrMultipleCredentials: more than one set of credentials — two Authorization headers, or two
// joined into one value, a Bearer and a DPoP one among them. The request cannot be judged.
var ErrMultipleCredentials = &Reason{Code: "multiple_credentials", Description: "The request has more than one Authorization header"}

// ReasonOf returns the Reason an error wraps, or ErrMalformed for anything unexpected, so that
// an unforeseen error still denies.
func ReasonOf(err error) *Reason {
	var r *Reason
	if errors.As(err, &r) {
		return r
	}
	return ErrMalformed
}
