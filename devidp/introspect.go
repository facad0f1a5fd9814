package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Token introspection (RFC 7662) and revocation (RFC 7009), as an Okta authorization server
// answers them at {issuer}/v1/introspect and {issuer}/v1/revoke: both need client
// authentication — client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt
// (the assertion's aud is the endpoint's URL, as Okta wants), or none for a public client.
//
// Opaque tokens (Client.Opaque, or token_format=opaque on the token endpoint, a dev-only
// extension) are random strings whose claims the server keeps; JWTs are introspected by
// verifying them. A revoked token answers {"active":false} until it would have expired.

// The client assertion type of RFC 7523 client authentication.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// introspection is the server's state for opaque tokens and revocations.
type introspection struct {
	mu      sync.Mutex // guards opaque and revoked
	opaque  map[[32]byte]opaqueToken
	revoked map[[32]byte]time.Time // token hash → when the token would have expired
	// assertions remembers client assertion ids until they expire: each is used once.
	assertions map[string]time.Time
}

type opaqueToken struct {
	claims  map[string]any
	expires time.Time
}

// opaquePrefix marks the dev issuer's opaque tokens (as ory_at_ marks Hydra's).
const opaquePrefix = "dev_at_"

// MintOpaque issues an opaque access token for req: a random string, whose claims only the
// introspection endpoint tells.
func (s *Server) MintOpaque(req TokenRequest) (string, error) {
	claims := s.Claims(req)
	tok := opaquePrefix + randomHex(32)
	s.intro.mu.Lock()
	defer s.intro.mu.Unlock()
	now := s.cfg.Now()
	for h, t := range s.intro.opaque { // a dev server: sweep as it goes
		if now.After(t.expires) {
			delete(s.intro.opaque, h)
		}
	}
	s.intro.opaque[hash(tok)] = opaqueToken{claims: claims, expires: unixOf(claims["exp"])}
	return tok, nil
}

func hash(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// Revoke revokes a token this server issued (RFC 7009: unknown tokens are no error).
func (s *Server) Revoke(tok string) {
	claims, ok := s.activeClaims(tok)
	if !ok {
		return
	}
	s.intro.mu.Lock()
	defer s.intro.mu.Unlock()
	delete(s.intro.opaque, hash(tok))
	s.intro.revoked[hash(tok)] = unixOf(claims["exp"])
}

// Introspect answers for tok as the introspection endpoint does: the token's claims in RFC
// 7662's members with "active": true, or {"active": false}.
func (s *Server) Introspect(tok string) map[string]any {
	claims, ok := s.activeClaims(tok)
	if !ok {
		return map[string]any{"active": false}
	}
	out := map[string]any{"active": true, "token_type": "Bearer"}
	for k, v := range claims {
		switch k {
		case "scp":
			out["scope"] = strings.Join(scopesOf(v), " ")
		case "cid":
			out["client_id"] = v
		case "ver":
		default:
			out[k] = v
		}
	}
	if _, bound := claims["cnf"]; bound {
		out["token_type"] = "DPoP"
	}
	return out
}

// activeClaims returns the claims of a token this server issued that is neither expired nor
// revoked.
func (s *Server) activeClaims(tok string) (map[string]any, bool) {
	now := s.cfg.Now()
	h := hash(tok)
	s.intro.mu.Lock()
	if exp, revoked := s.intro.revoked[h]; revoked && now.Before(exp) {
		s.intro.mu.Unlock()
		return nil, false
	}
	o, isOpaque := s.intro.opaque[h]
	s.intro.mu.Unlock()
	if isOpaque {
		return o.claims, now.Before(o.expires)
	}
	claims, err := s.verifyOwn(tok)
	if err != nil {
		return nil, false
	}
	if !now.Before(unixOf(claims["exp"])) {
		return nil, false
	}
	return claims, true
}

// unixOf reads a NumericDate claim, minted (an integer) or decoded (a float64); anything else
// is the epoch, long expired.
func unixOf(v any) time.Time {
	switch n := v.(type) {
	case int64:
		return time.Unix(n, 0)
	case int:
		return time.Unix(int64(n), 0)
	case float64:
		return time.Unix(int64(n), 0)
	}
	return time.Unix(0, 0)
}

// scopesOf reads the scp claim, minted ([]string) or decoded ([]any).
func scopesOf(v any) []string {
	switch l := v.(type) {
	case []string:
		return l
	case []any:
		var out []string
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// verifyOwn verifies a JWT this server signed with one of its current keys.
func (s *Server) verifyOwn(tok string) (map[string]any, error) {
	msg, err := jws.Parse([]byte(tok))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, fmt.Errorf("not a JWS")
	}
	kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID()
	s.mu.RLock()
	i := slices.IndexFunc(s.keys, func(k signingKey) bool { return k.kid == kid })
	var k signingKey
	if i >= 0 {
		k = s.keys[i]
	}
	s.mu.RUnlock()
	if i < 0 {
		return nil, fmt.Errorf("unknown kid")
	}
	payload, err := jws.Verify([]byte(tok), jws.WithKey(jwa.RS256(), &k.priv.PublicKey))
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, err
	}
	if claims["iss"] != s.cfg.Issuer {
		return nil, fmt.Errorf("another issuer")
	}
	return claims, nil
}

// authenticateClient checks the client authentication of a request to the endpoint at
// endpointURL (the assertion's audience), and returns the client id.
func (s *Server) authenticateClient(r *http.Request, endpointURL string) (string, error) {
	fail := &errOAuth{http.StatusUnauthorized, "invalid_client", "Client authentication failed."}
	if id, secret, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: both are form-encoded before they are joined and base64-encoded.
		id, err1 := url.QueryUnescape(id)
		secret, err2 := url.QueryUnescape(secret)
		if err1 == nil && err2 == nil && s.secretMatches(id, secret) {
			return id, nil
		}
		return "", fail
	}
	f := r.PostForm
	id := f.Get("client_id")
	switch {
	case f.Get("client_assertion_type") == assertionType:
		return s.checkAssertion(f.Get("client_assertion"), id, endpointURL)
	case f.Has("client_secret"):
		if s.secretMatches(id, f.Get("client_secret")) {
			return id, nil
		}
	case id != "":
		if c, known := s.cfg.Clients[id]; known && c.Public {
			return id, nil
		}
	}
	return "", fail
}

// secretMatches reports whether secret is client id's, in constant time.
func (s *Server) secretMatches(id, secret string) bool {
	c, known := s.cfg.Clients[id]
	return known && c.Secret != "" && subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) == 1
}

// maxAssertionLife bounds how far ahead an assertion's exp may be: the used jti are kept until
// then.
const maxAssertionLife = 5 * time.Minute

// checkAssertion verifies an RFC 7523 client assertion: signed with the client's
// AssertionKey (private_key_jwt) or, HS256, with its secret (client_secret_jwt); iss and sub
// the client id; aud the endpoint; not expired, nor valid for more than maxAssertionLife; its
// jti not used before.
func (s *Server) checkAssertion(assertion, id, endpointURL string) (string, error) {
	fail := &errOAuth{http.StatusUnauthorized, "invalid_client", "Client authentication failed."}
	msg, err := jws.Parse([]byte(assertion))
	if err != nil || len(msg.Signatures()) != 1 {
		return "", fail
	}
	var claims struct {
		Iss, Sub, Jti string
		Aud           any
		Exp           float64
	}
	if json.Unmarshal(msg.Payload(), &claims) != nil {
		return "", fail
	}
	if id == "" {
		id = claims.Iss
	}
	c, known := s.cfg.Clients[id]
	if !known || claims.Iss != id || claims.Sub != id || claims.Jti == "" || !audienceIs(claims.Aud, endpointURL) {
		return "", fail
	}
	alg, _ := msg.Signatures()[0].ProtectedHeaders().Algorithm()
	switch {
	case c.AssertionKey != nil && alg != jwa.HS256():
		_, err = jws.Verify([]byte(assertion), jws.WithKey(alg, c.AssertionKey))
	case c.Secret != "" && alg == jwa.HS256():
		_, err = jws.Verify([]byte(assertion), jws.WithKey(jwa.HS256(), []byte(c.Secret)))
	default:
		return "", fail
	}
	now := s.cfg.Now()
	exp := time.Unix(int64(claims.Exp), 0)
	if err != nil || !now.Before(exp) || exp.After(now.Add(maxAssertionLife)) {
		return "", fail
	}
	s.intro.mu.Lock()
	defer s.intro.mu.Unlock()
	if until, used := s.intro.assertions[claims.Jti]; used && now.Before(until) {
		return "", fail
	}
	for jti, until := range s.intro.assertions { // a dev server: sweep as it goes
		if !now.Before(until) {
			delete(s.intro.assertions, jti)
		}
	}
	s.intro.assertions[claims.Jti] = exp
	return id, nil
}

func audienceIs(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		return len(a) == 1 && a[0] == want
	}
	return false
}

// serveIntrospect is RFC 7662's endpoint.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, &errOAuth{400, "invalid_request", "The request body could not be parsed."}, false)
		return
	}
	if _, err := s.authenticateClient(r, s.cfg.Issuer+"/v1/introspect"); err != nil {
		_, _, basic := r.BasicAuth()
		writeOAuthError(w, err, basic)
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeOAuthError(w, &errOAuth{400, "invalid_request", "The token parameter is required."}, false)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.Introspect(tok))
}

// serveRevoke is RFC 7009's endpoint: 200 whether or not the token was known.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, &errOAuth{400, "invalid_request", "The request body could not be parsed."}, false)
		return
	}
	if _, err := s.authenticateClient(r, s.cfg.Issuer+"/v1/revoke"); err != nil {
		_, _, basic := r.BasicAuth()
		writeOAuthError(w, err, basic)
		return
	}
	s.Revoke(r.PostForm.Get("token"))
	w.WriteHeader(http.StatusOK)
}
