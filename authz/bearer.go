package authz

import (
	"errors"
	"strings"
)

var errNoBearer = errors.New("no bearer credentials")

// bearerToken extracts the one bearer token from the Authorization header values (RFC 6750
// §2.1). No header, or only another scheme (Basic, …), is errNoBearer: the client sent no
// usable credentials. A Bearer header that is empty, repeated, or holds more than one token68
// value is malformed. The scheme name is case-insensitive. Tokens in the query string or body
// are never read.
func bearerToken(values []string) (string, error) {
	var token string
	found := 0
	for _, v := range values {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
		if !strings.EqualFold(scheme, "bearer") {
			continue
		}
		found++
		token = strings.TrimLeft(rest, " ")
	}
	switch {
	case found == 0:
		return "", errNoBearer
	case found > 1:
		return "", errors.New("more than one Authorization: Bearer header")
	case token == "":
		return "", errors.New("empty bearer token")
	case len(token) > MaxTokenBytes:
		return "", ErrTooLarge
	case !isToken68(token):
		return "", errors.New("bearer credentials are not a single token68 value")
	}
	return token, nil
}

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
