// Package token verifies access tokens: it reads the credentials of a request's Authorization
// header (Bearer and DPoP, RFC 6750 and 9449) — or of the other places a route opts into: a
// query parameter, a cookie, a header of its own (Place, Find) — parses the token as a compact JWS, routes it to
// its issuer by the still untrusted iss, checks the algorithm, the key (package jwks), the
// signature and the registered claims — issuer identifier, audience, expiry with leeway, client
// — and returns its Claims, or an error wrapping one Reason. What it accepts it remembers by the
// token's SHA-256 (never the token), tied to the key that verified it, and what it refuses for
// good it remembers briefly.
//
// It trusts nothing of a token until its signature verifies with a key of the issuer's own set
// (never one the token names or embeds), and reads claims by their exact names: a payload a
// case-insensitive reader could take differently is refused. Introspection of tokens it cannot
// verify locally (RFC 7662) is its subpackage introspect. It knows nothing of route policies,
// front ends or the answer a refusal gets.
package token
