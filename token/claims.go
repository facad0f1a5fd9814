package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/platformauth/envoy-okta-authz/internal/strictjson"
)

// Claims are the verified claims of an access token.
type Claims struct {
	Issuer   string
	Subject  string
	Audience []string
	ClientID string // Okta's cid, or RFC 9068's client_id
	UserID   string // Okta's uid, when a user is involved
	Scopes   []string
	ID       string // jti
	KeyID    string // kid of the key that verified it
	// IssuerName is the configured name of the issuer that verified it.
	IssuerName string
	Expiry     time.Time
	IssuedAt   time.Time // zero when absent
	NotBefore  time.Time // zero when absent
	// ACR and AuthTime say how and when the user authenticated (RFC 9068 §2.2.1, for step-up
	// rules, RFC 9470): empty and zero when absent — and when not a string and a NumericDate,
	// which fails a rule that asks for them rather than refuse the token everywhere.
	ACR      string
	AuthTime time.Time
	// Cnf is the token's confirmation (RFC 7800): the key or certificate it is bound to; nil
	// for a bearer token.
	Cnf *Confirmation
	// Raw is the verified JSON payload, as signed.
	Raw []byte
	// Values holds what package policy derives from these claims once: their values as its
	// expressions read them. Only package policy reads and writes it.
	Values atomic.Value
	// Memo holds what the decision derives from these claims for the identity a rule
	// forwards (the upstream headers), so that a token in steady use derives it once: the
	// claims are shared through the cache. Only package authz reads and writes it.
	Memo atomic.Value
}

// Confirmation is a token's cnf claim: what the presenter must prove to hold.
type Confirmation struct {
	// JKT is the RFC 7638 thumbprint of the DPoP key the token is bound to (RFC 9449 §6).
	JKT string
	// X5TS256 is the SHA-256 thumbprint of the client certificate the token is bound to (RFC
	// 8705 §3.1).
	X5TS256 string
	// Unknown is set when cnf holds a member this service cannot check (or none): such a token
	// is never accepted, since its binding cannot be verified.
	Unknown bool
}

// decodeConfirmation reads a cnf claim.
func decodeConfirmation(raw []byte) (*Confirmation, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, errors.New("want an object")
	}
	c := &Confirmation{Unknown: len(members) == 0}
	for name, v := range members {
		var dst *string
		switch name {
		case "jkt":
			dst = &c.JKT
		case "x5t#S256":
			dst = &c.X5TS256
		default:
			c.Unknown = true
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil || *dst == "" {
			return nil, fmt.Errorf("%s: want a non-empty string", name)
		}
	}
	return c, nil
}

// HasScope reports whether the token grants scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// All returns every claim, decoded from the verified payload. Numbers are json.Number: they
// keep their JSON form (a 2^53+1 id forwarded in a header stays exact), and compare by value.
func (c *Claims) All() (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(c.Raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	return m, nil
}

// wireClaims are the raw values of the claims Verify reads, found by their exact names (JSON
// member names are case-sensitive: "Exp" is another claim, not exp).
type wireClaims struct {
	iss, sub, aud, cid, clientID, uid, scp, scope, jti, exp, iat, nbf, cnf, acr, authTime []byte
}

func (w *wireClaims) set(name, value []byte) error {
	switch string(name) {
	case "iss":
		w.iss = value
	case "sub":
		w.sub = value
	case "aud":
		w.aud = value
	case "cid":
		w.cid = value
	case "client_id":
		w.clientID = value
	case "uid":
		w.uid = value
	case "scp":
		w.scp = value
	case "scope":
		w.scope = value
	case "jti":
		w.jti = value
	case "exp":
		w.exp = value
	case "iat":
		w.iat = value
	case "nbf":
		w.nbf = value
	case "cnf":
		w.cnf = value
	case "acr":
		w.acr = value
	case "auth_time":
		w.authTime = value
	default:
		if isRegisteredVariant(name) {
			return fmt.Errorf("%w: %q", ErrAmbiguousClaims, name)
		}
	}
	return nil
}

// registeredClaims are the claims this service, the JWT and OAuth specifications, or Okta give
// a meaning: a claim named like one of them but for case ("Scope", "SUB") is refused, because
// an upstream that reads x-authz-claims with Go's encoding/json would take it for the real one.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "cid", "uid", "scp",
	"scope", "cnf", "client_id", "auth_time", "acr", "amr", "ver"}

// isRegisteredVariant reports whether name is a registered claim's name in another case.
func isRegisteredVariant(name []byte) bool {
	for _, r := range registeredClaims {
		if len(name) <= utf8.UTFMax*len(r) && strictjson.SameName(name, []byte(r)) && string(name) != r {
			return true
		}
	}
	return false
}

// decodeClaims decodes a payload no signature has vouched for yet (the issuer is chosen by its
// iss). The payload must be one JSON object in which no object has two member names equal but
// for case (or repeated): Go's encoding/json, which many upstreams use to read x-authz-claims,
// matches names case-insensitively and takes the last, so {"sub":"a","Sub":"b"} would mean
// one subject here and another there. Such a payload is refused (RFC 7519 §4 allows it).
func decodeClaims(payload []byte) (*Claims, error) {
	var w wireClaims
	if err := strictjson.Object(payload, w.set); err != nil {
		switch {
		case errors.Is(err, ErrAmbiguousClaims):
			return nil, err
		case errors.Is(err, strictjson.ErrFoldedNames):
			return nil, ErrAmbiguousClaims
		}
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	return w.claims(payload)
}

// decodeVerifiedClaims decodes a payload that has verified before (the token cache's hits):
// decodeClaims accepted these very bytes, so they are read again without the checks.
func decodeVerifiedClaims(payload []byte) (*Claims, error) {
	var w wireClaims
	if err := strictjson.Members(payload, w.set); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	return w.claims(payload)
}

// claims normalises the raw values into Claims.
func (w *wireClaims) claims(payload []byte) (*Claims, error) {
	c := &Claims{Raw: payload}
	var clientID string // RFC 9068's client_id; Okta's cid
	for _, f := range []struct {
		raw []byte
		dst *string
		n   string
	}{{w.iss, &c.Issuer, "iss"}, {w.sub, &c.Subject, "sub"}, {w.cid, &c.ClientID, "cid"},
		{w.uid, &c.UserID, "uid"}, {w.jti, &c.ID, "jti"}, {w.clientID, &clientID, "client_id"}} {
		if f.raw == nil {
			continue
		}
		s, ok := strictjson.String(f.raw)
		if !ok {
			return nil, fmt.Errorf("%w: %s: want a string", ErrMalformed, f.n)
		}
		*f.dst = s
	}
	// Okta names the client cid, RFC 9068 (and Hydra, Keycloak) client_id: either is the client;
	// both must agree.
	switch {
	case w.cid == nil:
		c.ClientID = clientID
	case w.clientID != nil && clientID != c.ClientID:
		return nil, fmt.Errorf("%w: cid and client_id name different clients", ErrAmbiguousClaims)
	}
	var err error
	if c.Audience, err = stringOrList(w.aud, false); err != nil {
		return nil, fmt.Errorf("%w: aud: %v", ErrMalformed, err)
	}
	// Okta puts scopes in scp as a JSON array; other issuers use a space-separated scope string.
	if c.Scopes, err = stringOrList(w.scp, true); err != nil {
		return nil, fmt.Errorf("%w: scp: %v", ErrMalformed, err)
	}
	if w.scope != nil {
		scope, ok := strictjson.String(w.scope)
		if !ok {
			return nil, fmt.Errorf("%w: scope: want a string", ErrMalformed)
		}
		for _, s := range strings.Fields(scope) {
			if !slices.Contains(c.Scopes, s) {
				c.Scopes = append(c.Scopes, s)
			}
		}
	}
	if c.Cnf, err = decodeConfirmation(w.cnf); err != nil {
		return nil, fmt.Errorf("%w: cnf: %v", ErrMalformed, err)
	}
	if w.acr != nil {
		c.ACR, _ = strictjson.String(w.acr)
	}
	c.AuthTime, _ = numericDate(w.authTime)
	for _, f := range []struct {
		raw []byte
		dst *time.Time
		n   string
	}{{w.exp, &c.Expiry, "exp"}, {w.iat, &c.IssuedAt, "iat"}, {w.nbf, &c.NotBefore, "nbf"}} {
		if *f.dst, err = numericDate(f.raw); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, f.n, err)
		}
	}
	return c, nil
}

var errClaimShape = errors.New("want a string or an array of strings")

// stringOrList decodes a claim that may be a string or an array of strings. With split, a
// string is space-separated (the scope convention).
func stringOrList(raw []byte, split bool) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		s, ok := strictjson.String(raw)
		if !ok {
			return nil, errClaimShape
		}
		if split {
			return strings.Fields(s), nil
		}
		return []string{s}, nil
	}
	list, ok := strictjson.Strings(raw)
	if !ok {
		return nil, errClaimShape
	}
	return list, nil
}

// numericDate decodes a JWT NumericDate (seconds since the epoch, possibly fractional).
func numericDate(raw []byte) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	// raw is one valid JSON value (the payload decoded): a number when it starts like one.
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return time.Time{}, errors.New("want a number")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return time.Time{}, errors.New("want a number")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, errors.New("want a plausible number of seconds")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
