package token

import (
	"errors"
	"strings"
)

// The authorization schemes an access token may come with.
const (
	SchemeBearer = "bearer" // RFC 6750
	SchemeDPoP   = "dpop"   // RFC 9449: with a DPoP proof header
)

// ParseAuthorization extracts the one access token, and its scheme, from the Authorization header
// values (RFC 6750 §2.1, RFC 9449 §7.1). No header, or another scheme (Basic, …), is
// ErrNoCredentials: the client sent no usable credentials. More than one set of credentials —
// two headers, or two joined into one value as Envoy's headers map joins repeated headers, a
// Bearer and a DPoP one among them — is ErrMultipleCredentials: the request is malformed,
// whatever the schemes. Credentials that are empty or hold more than one token68 value are
// malformed. Scheme names are case-insensitive. Tokens in the query string or body are never
// read.
func ParseAuthorization(values []string) (scheme, token string, err error) {
	var v string
	n := 0
	for _, val := range values {
		if c := credentialsIn(val); c > 0 {
			n += c
			v = val
		}
	}
	switch {
	case n == 0:
		return "", "", ErrNoCredentials
	case n > 1:
		return "", "", ErrMultipleCredentials
	}
	name, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
	switch {
	case strings.EqualFold(name, SchemeBearer):
		scheme = SchemeBearer
	case strings.EqualFold(name, SchemeDPoP):
		scheme = SchemeDPoP
	default:
		return "", "", ErrNoCredentials
	}
	token = strings.TrimLeft(rest, " ")
	switch {
	case token == "":
		return scheme, "", errors.New("empty access token")
	case len(token) > MaxTokenBytes:
		return scheme, "", ErrTooLarge
	case !isToken68(token):
		return scheme, "", errors.New("the credentials are not a single token68 value")
	}
	return scheme, token, nil
}

// credentialsIn counts the sets of credentials in one Authorization value: 0 for a blank
// value, otherwise one plus every comma followed by another "scheme SP credentials" pair.
// No single set of credentials holds that: token68 has no comma, and auth-params after a
// comma are name=value.
func credentialsIn(v string) int {
	if strings.TrimSpace(v) == "" {
		return 0
	}
	n := 1
	for rest := v; ; {
		i := strings.IndexByte(rest, ',')
		if i < 0 {
			return n
		}
		rest = rest[i+1:]
		if startsWithScheme(strings.TrimLeft(rest, " \t")) {
			n++
		}
	}
}

// startsWithScheme reports whether s starts with an auth-scheme (an RFC 9110 token) and a space.
func startsWithScheme(s string) bool {
	i := 0
	for i < len(s) && tokenChar[s[i]] {
		i++
	}
	return i > 0 && i < len(s) && s[i] == ' '
}

// tokenChar marks RFC 9110 tchar.
var tokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

// isToken68 reports whether s matches RFC 7235's token68: 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=". This rejects spaces and commas, so a header Envoy joined from two
// copies ("Bearer a,Bearer b") never yields a token.
func isToken68(s string) bool {
	i := 0
	for i < len(s) && token68Char[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// token68Char marks the bytes token68 allows before its padding.
var token68Char = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()
