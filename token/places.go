package token

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// A Place is where a request may carry its access token: the Authorization header (the
// default, RFC 6750 §2.1), or — for clients that cannot set it, such as a browser opening a
// WebSocket — a query parameter (§2.3), a cookie or another header, when a rule opts in.
type Place struct {
	Kind PlaceKind
	// Name is the parameter, cookie or header (lower-case) name; empty for Authorization.
	Name string
}

// PlaceKind is the kind of a Place.
type PlaceKind uint8

// The kinds of places.
const (
	InAuthorization PlaceKind = iota
	InQuery
	InCookie
	InHeader
)

// Authorization is the default place.
var Authorization = Place{}

func (p Place) String() string {
	switch p.Kind {
	case InQuery:
		return "query:" + p.Name
	case InCookie:
		return "cookie:" + p.Name
	case InHeader:
		return "header:" + p.Name
	}
	return "authorization"
}

var (
	// queryName is a parameter name that needs no percent-encoding: the name Envoy's
	// query_parameters_to_remove matches, as sent, is the name every upstream decodes.
	queryName = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)
	// cookieName is an RFC 6265 cookie-name (an RFC 9110 token).
	cookieName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	// headerName is a lower-case header name of letters, digits and dashes.
	headerName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
)

// headersNotPlaces carry something else than a token of their own: the places above, the
// request itself, or what a proxy sets; a token is never read from them.
var headersNotPlaces = []string{"authorization", "dpop", "cookie", "host", "proxy-authorization",
	"content-type", "content-length", "transfer-encoding", "connection", "upgrade", "te",
	"x-original-uri", "x-original-method", "x-original-host", "x-request-id"}

// ParsePlace reads a place as a policy names it: authorization, query:NAME, cookie:NAME or
// header:NAME.
func ParsePlace(s string) (Place, error) {
	kind, name, _ := strings.Cut(s, ":")
	switch strings.ToLower(kind) {
	case "authorization":
		if name == "" && s == "authorization" {
			return Authorization, nil
		}
	case "query":
		if !queryName.MatchString(name) {
			return Place{}, fmt.Errorf("%q: a query parameter name of letters, digits and -._~ (no percent-encoding)", s)
		}
		return Place{InQuery, name}, nil
	case "cookie":
		if !cookieName.MatchString(name) {
			return Place{}, fmt.Errorf("%q: a cookie name (an RFC 6265 token)", s)
		}
		return Place{InCookie, name}, nil
	case "header":
		switch {
		case !headerName.MatchString(name):
			return Place{}, fmt.Errorf("%q: a header name in lower case (letters, digits, dashes)", s)
		case slices.Contains(headersNotPlaces, name) || strings.HasPrefix(name, "x-authz-") ||
			strings.HasPrefix(name, "x-forwarded-") || strings.HasPrefix(name, "x-envoy-"):
			return Place{}, fmt.Errorf("%q: that header carries something else (use authorization, or a header of your own)", s)
		}
		return Place{InHeader, name}, nil
	}
	return Place{}, fmt.Errorf("%q is not authorization, query:NAME, cookie:NAME or header:NAME", s)
}

// ParsePlaces reads a list of places (a policy's credentials); nil when the list is absent.
func ParsePlaces(specs []string) ([]Place, []error) {
	if specs == nil {
		return nil, nil
	}
	if len(specs) == 0 {
		return nil, []error{errors.New("credentials: name at least one place")}
	}
	var out []Place
	var errs []error
	for _, s := range specs {
		p, err := ParsePlace(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("credentials: %w", err))
		case slices.Contains(out, p):
			errs = append(errs, fmt.Errorf("credentials: %s is named twice", p))
		default:
			out = append(out, p)
		}
	}
	return out, errs
}

// Reasons a request's tokens cannot be told apart (400 invalid_request, RFC 6750 §3.1).
var (
	// ErrMultipleTokens: tokens in two of the places a request is read from, or a place given
	// twice (two parameters, two cookies, a header repeated).
	ErrMultipleTokens = &Reason{Code: "multiple_tokens", Description: "The request carries more than one access token"}
	// ErrEncodedTokenParameter: a query parameter whose name reads as the token's only once
	// percent-decoded: upstreams decode it, a proxy removing the token's parameter does not.
	ErrEncodedTokenParameter = &Reason{Code: "token_parameter_encoded", Description: "The access token parameter's name is percent-encoded"}
)

// HeaderReader reads a request's headers by lower-case name.
type HeaderReader interface {
	Values(name string) []string
}

// Found is the access token a request carries in the places it is read from.
type Found struct {
	Place  Place
	Scheme string // SchemeBearer, or SchemeDPoP from the Authorization header
	Token  string
}

// Find returns the one access token a request carries in places: the Authorization values,
// the request target's query (as sent), the headers. No token in any place is ErrNoCredentials;
// tokens in two places, or a place given twice, ErrMultipleTokens (two Authorization headers stay
// ErrMultipleCredentials); a malformed value is an error naming the place (never the token).
// A Found with a Place is returned whenever a place holds something, even with an error.
func Find(places []Place, authorization []string, target string, h HeaderReader) (Found, error) {
	var found Found
	var foundErr error
	n := 0
	for _, p := range places {
		f, err := findIn(p, authorization, target, h)
		if errors.Is(err, ErrNoCredentials) {
			continue
		}
		if n++; n > 1 {
			return Found{}, fmt.Errorf("%w: in %s and %s", ErrMultipleTokens, found.Place, p)
		}
		found, foundErr = f, err
	}
	if n == 0 {
		return Found{}, ErrNoCredentials
	}
	return found, foundErr
}

func findIn(p Place, authorization []string, target string, h HeaderReader) (Found, error) {
	f := Found{Place: p, Scheme: SchemeBearer}
	var values []string
	switch p.Kind {
	case InAuthorization:
		var err error
		f.Scheme, f.Token, err = ParseAuthorization(authorization)
		return f, err
	case InQuery:
		var err error
		if values, err = queryValues(target, p.Name); err != nil {
			return f, err
		}
	case InCookie:
		if h != nil {
			values = cookieValues(h.Values("cookie"), p.Name)
		}
	case InHeader:
		if h != nil {
			for _, v := range h.Values(p.Name) {
				values = append(values, strings.Split(v, ",")...) // Envoy joins a repeated header with ","
			}
		}
	}
	switch {
	case len(values) == 0:
		return f, ErrNoCredentials
	case len(values) > 1:
		return f, fmt.Errorf("%w: %s given %d times", ErrMultipleTokens, p, len(values))
	}
	f.Token = strings.TrimSpace(values[0])
	switch {
	case f.Token == "":
		return f, fmt.Errorf("%s: empty access token", p)
	case len(f.Token) > MaxTokenBytes:
		return f, ErrTooLarge
	case !isToken68(f.Token):
		return f, fmt.Errorf("%s: the value is not a single token68 value", p)
	}
	return f, nil
}

// queryValues returns the values of the parameter name in target's query string, decoded as
// RFC 6750 §2.3 says (application/x-www-form-urlencoded). A parameter whose name is name only
// once decoded ("access%5Ftoken") is ErrEncodedTokenParameter.
func queryValues(target, name string) ([]string, error) {
	_, q, ok := strings.Cut(target, "?")
	if !ok {
		return nil, nil
	}
	var out []string
	for pair := range strings.SplitSeq(q, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			if strings.Contains(k, "%") || strings.Contains(k, "+") {
				if d, err := url.QueryUnescape(k); err == nil && d == name {
					return nil, fmt.Errorf("%w: %q", ErrEncodedTokenParameter, k)
				}
			}
			continue
		}
		if d, err := url.QueryUnescape(v); err == nil {
			v = d
		} // else v keeps its "%", which no token68 value has: refused as malformed
		out = append(out, v)
	}
	return out, nil
}

// cookieValues returns the values of the cookie name in the Cookie header values (pairs
// separated by ";" — and by "," where a proxy joined two headers), unquoted.
func cookieValues(headers []string, name string) []string {
	var out []string
	for _, h := range headers {
		for pair := range strings.FieldsFuncSeq(h, isCookieSeparator) {
			k, v, _ := strings.Cut(pair, "=")
			if strings.TrimSpace(k) != name {
				continue
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			out = append(out, v)
		}
	}
	return out
}

func isCookieSeparator(r rune) bool { return r == ';' || r == ',' }

// WithoutCookie returns the Cookie header values without the cookie name, as one header value
// ("a=1; b=2"); empty when no other cookie remains.
func WithoutCookie(headers []string, name string) string {
	var keep []string
	for _, h := range headers {
		for pair := range strings.FieldsFuncSeq(h, isCookieSeparator) {
			pair = strings.TrimSpace(pair)
			k, _, _ := strings.Cut(pair, "=")
			if pair != "" && strings.TrimSpace(k) != name {
				keep = append(keep, pair)
			}
		}
	}
	return strings.Join(keep, "; ")
}

// WithoutQueryParameter returns target without the parameter name (as sent), the other
// parameters in their order; without "?" when none remains.
func WithoutQueryParameter(target, name string) string {
	path, q, ok := strings.Cut(target, "?")
	if !ok {
		return target
	}
	var keep []string
	for pair := range strings.SplitSeq(q, "&") {
		if k, _, _ := strings.Cut(pair, "="); k != name {
			keep = append(keep, pair)
		}
	}
	if len(keep) == 0 {
		return path
	}
	return path + "?" + strings.Join(keep, "&")
}
