// Package devidp is a small Okta-shaped OAuth 2.0 authorization server for local stacks and
// tests: issuer metadata, a JSON Web Key Set, a client-credentials token endpoint and key
// rotation. Its tokens carry the claims of an Okta access token (ver, jti, iss, aud, iat, exp,
// cid, uid, scp, sub) and are signed RS256 with a kid. A token request with a valid DPoP proof
// gets a DPoP-bound token (token_type DPoP, cnf.jkt), as from an Okta app that requires DPoP;
// the client side of DPoP (a key, proofs) is here too, for curl users and tests.
//
// It is for development only: keys live in memory, clients are configured in plain text, and
// nothing is rate-limited or audited.
package devidp

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/platformauth/envoy-okta-authz/internal/dpop"
)

// Client is a registered OAuth client and the scopes it may be granted.
type Client struct {
	// Secret authenticates the client (client_secret_basic, client_secret_post, and HS256
	// assertions for client_secret_jwt). Empty: none of those.
	Secret string
	Scopes []string
	// Opaque: the token endpoint issues this client opaque tokens (like Okta's org
	// authorization server, or Hydra's access_token_strategy opaque), which only
	// introspection reads.
	Opaque bool
	// Public: the client authenticates with its client_id alone (none), as a public client
	// may at Okta's introspection endpoint.
	Public bool
	// AssertionKey is the public key of the client's private_key_jwt assertions.
	AssertionKey any
}

// Config configures a Server.
type Config struct {
	// Issuer is the full issuer URL, e.g. http://localhost:9400/oauth2/default. Its path is the
	// prefix of every endpoint, as with an Okta custom authorization server.
	Issuer string
	// Audience is put in every token's aud (Okta's default server uses api://default).
	Audience string
	// Clients maps client ids to clients.
	Clients map[string]Client
	// TokenTTL is the lifetime of minted tokens (default one hour, as Okta's default).
	TokenTTL time.Duration
	// KeysMaxAge is the Cache-Control max-age of the key set (default 5 minutes).
	KeysMaxAge time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// SigningKey, when set, is the first signing key (LoadSigningKey keeps one in a file, so
	// that tokens survive a restart); its kid is derived from the key. Default: a fresh key.
	SigningKey *rsa.PrivateKey
}

// Server is an in-memory authorization server. It is safe for concurrent use.
type Server struct {
	cfg      Config
	dpop     *dpop.Verifier // proofs sent to the token endpoint
	issuer   *url.URL
	mu       sync.RWMutex // guards keys
	keys     []signingKey // keys[0] signs; the previous key stays published for tokens in flight
	rotation int
	intro    introspection
}

type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// New validates cfg and returns a Server with a fresh signing key.
func New(cfg Config) (*Server, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("devidp: issuer %q must be an absolute http(s) URL", cfg.Issuer)
	}
	if strings.HasSuffix(cfg.Issuer, "/") {
		return nil, fmt.Errorf("devidp: issuer %q must not end in a slash (Okta's do not)", cfg.Issuer)
	}
	if cfg.Audience == "" {
		cfg.Audience = "api://default"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.KeysMaxAge <= 0 {
		cfg.KeysMaxAge = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Clients = maps.Clone(cfg.Clients)
	proofs, err := dpop.New(dpop.Options{Leeway: time.Minute, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, issuer: u, dpop: proofs, intro: introspection{opaque: map[[32]byte]opaqueToken{},
		revoked: map[[32]byte]time.Time{}, assertions: map[string]time.Time{}}}
	if cfg.SigningKey != nil {
		kid, err := keyID(cfg.SigningKey)
		if err != nil {
			return nil, err
		}
		s.keys = []signingKey{{kid: kid, priv: cfg.SigningKey}}
		return s, nil
	}
	if _, err := s.Rotate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Issuer returns the issuer URL.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// Audience returns the audience minted tokens carry.
func (s *Server) Audience() string { return s.cfg.Audience }

// Rotate generates a new signing key and returns its kid. The previous key stays in the key set
// (so tokens it signed keep verifying); older ones are dropped.
func (s *Server) Rotate() (string, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("devidp: generate key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotation++
	k := signingKey{kid: fmt.Sprintf("dev-%d-%s", s.rotation, randomHex(4)), priv: priv}
	s.keys = append([]signingKey{k}, s.keys...)
	if len(s.keys) > 2 {
		s.keys = s.keys[:2]
	}
	return k.kid, nil
}

// CurrentKID returns the kid of the key that signs new tokens.
func (s *Server) CurrentKID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys[0].kid
}

// PrivateKey returns the current signing key, for tests that need to forge variations.
func (s *Server) PrivateKey() (*rsa.PrivateKey, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys[0].priv, s.keys[0].kid
}

// KeySet returns the public JSON Web Key Set.
func (s *Server) KeySet() ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := jwk.NewSet()
	for _, k := range s.keys {
		pub, err := jwk.Import(&k.priv.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("devidp: import key: %w", err)
		}
		for name, v := range map[string]any{jwk.KeyIDKey: k.kid, jwk.AlgorithmKey: jwa.RS256(), jwk.KeyUsageKey: "sig"} {
			if err := pub.Set(name, v); err != nil {
				return nil, fmt.Errorf("devidp: key %s: %w", name, err)
			}
		}
		if err := set.AddKey(pub); err != nil {
			return nil, fmt.Errorf("devidp: add key: %w", err)
		}
	}
	return json.Marshal(set)
}

// TokenRequest describes a token to mint.
type TokenRequest struct {
	ClientID string
	Scopes   []string
	// Subject defaults to the client id (as Okta does for the client-credentials grant).
	Subject string
	// UserID, when set, becomes the uid claim (Okta adds it when a user is involved).
	UserID string
	// TTL defaults to the server's TokenTTL.
	TTL time.Duration
	// Extra claims are added last and may override any standard claim (tests use this to
	// mint wrong audiences, expired tokens and the like).
	Extra map[string]any
}

// Mint signs an access token for req with the current key. It does not check the client:
// the token endpoint does that; tests call Mint directly.
func (s *Server) Mint(req TokenRequest) (string, error) {
	claims := s.Claims(req)
	return s.Sign(claims)
}

// Claims returns the claims Mint would sign for req.
func (s *Server) Claims(req TokenRequest) map[string]any {
	now := s.cfg.Now()
	ttl := req.TTL
	if ttl <= 0 {
		ttl = s.cfg.TokenTTL
	}
	sub := req.Subject
	if sub == "" {
		sub = req.ClientID
	}
	scopes := req.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	claims := map[string]any{
		"ver": 1,
		"jti": "AT." + randomHex(16),
		"iss": s.cfg.Issuer,
		"aud": s.cfg.Audience,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"cid": req.ClientID,
		"scp": scopes,
		"sub": sub,
	}
	if req.UserID != "" {
		claims["uid"] = req.UserID
	}
	maps.Copy(claims, req.Extra)
	return claims
}

// Sign signs arbitrary claims with the current key (RS256, with its kid).
func (s *Server) Sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: marshal claims: %w", err)
	}
	priv, kid := s.PrivateKey()
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
		return "", fmt.Errorf("devidp: header: %w", err)
	}
	tok, err := jws.Sign(payload, jws.WithKey(jwa.RS256(), priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("devidp: sign: %w", err)
	}
	return string(tok), nil
}

// errOAuth is an RFC 6749 error response.
type errOAuth struct {
	status int
	code   string
	desc   string
}

func (e *errOAuth) Error() string { return e.code + ": " + e.desc }

// grant checks a client-credentials request and returns the scopes to grant.
func (s *Server) grant(clientID, secret string, requested []string) ([]string, error) {
	c, ok := s.cfg.Clients[clientID]
	if !ok || clientID == "" || c.Secret != secret {
		return nil, &errOAuth{401, "invalid_client", "Client authentication failed."}
	}
	if len(requested) == 0 {
		return slices.Clone(c.Scopes), nil
	}
	for _, sc := range requested {
		if !slices.Contains(c.Scopes, sc) {
			return nil, &errOAuth{400, "invalid_scope", fmt.Sprintf("The requested scope %q is not allowed for this client.", sc)}
		}
	}
	return requested, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
