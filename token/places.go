package token

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
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
	// decoded or normalised (percent-encoded, another case, PHP's "." and "[", after a ";"):
	// upstreams read it so, a proxy removing the token's parameter does not.
	ErrEncodedTokenParameter = &Reason{Code: "token_parameter_encoded", Description: "A query parameter's name reads as the access token's once decoded"}
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
// RFC 6750 §2.3 says (application/x-www-form-urlencoded): the pairs between "&" named name as
// sent, which is how Envoy's query_parameters_to_remove and the service's own removal match it.
// Any other parameter an upstream may read as name — percent-encoded ("access%5Ftoken"), in
// another case ("Access_Token", ASP.NET), with "." or "[" (PHP), or after a ";" (Rack, CGI:
// "x=1;access_token=…") — is ErrEncodedTokenParameter: the upstream would get a token the
// service never judged, and a removal could not keep it away.
func queryValues(target, name string) ([]string, error) {
	_, q, ok := strings.Cut(target, "?")
	if !ok {
		return nil, nil
	}
	var out []string
	for pair := range strings.SplitSeq(q, "&") {
		first := true
		for seg := range strings.SplitSeq(pair, ";") {
			k, _, _ := strings.Cut(seg, "=")
			if !(first && k == name) && ReadsAs(k, name) {
				return nil, fmt.Errorf("%w: %q", ErrEncodedTokenParameter, k)
			}
			first = false
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			continue
		}
		if d, err := url.QueryUnescape(v); err == nil {
			v = d
		} // else v keeps its "%", which no token68 value has: refused as malformed
		out = append(out, v)
	}
	return out, nil
}

// ReadsAs reports whether some upstream may read the parameter or cookie name k as name, once
// it has decoded it ("%XX", "%uXXXX", "+"; twice over, for one that decodes again), folded its
// case, cut it at "[" (PHP's arrays: "name[]") or a NUL, and read "." and " " (and a "[" without
// "]") as "_", as PHP does.
func ReadsAs(k, name string) bool {
	if strings.EqualFold(k, name) {
		return true
	}
	if !strings.ContainsAny(k, "%+.[ \x00") && !strings.ContainsAny(name, ".") {
		return false // nothing in k an upstream would rewrite: only its case, seen above
	}
	want := phpName(name)
	for _, n := range lenientNames(k) {
		if strings.EqualFold(n, want) {
			return true
		}
	}
	return false
}

// lenientNames are the names an upstream may make of k: decoded up to three times, then with
// PHP's reading of "[" both ways.
func lenientNames(k string) []string {
	for range 3 {
		d := lenientUnescape(k)
		if d == k {
			break
		}
		k = d
	}
	k = strings.TrimLeft(k, " ")
	if i := strings.IndexByte(k, 0); i >= 0 {
		k = k[:i]
	}
	out := []string{phpName(k)}
	if i := strings.IndexByte(k, '['); i >= 0 {
		out = append(out, phpName(k[:i]))
	}
	return out
}

// phpName reads "." and " " and "[" in a name as "_" (PHP's variable names).
func phpName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == ' ' || r == '[' {
			return '_'
		}
		return r
	}, s)
}

// lenientUnescape decodes "+" as a space, and "%XX" and "%uXXXX" (classic ASP.NET) wherever
// they are well-formed, leaving any other "%" as it is.
func lenientUnescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U'):
			if n, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil {
				b.WriteRune(rune(n))
				i += 5
			} else {
				b.WriteByte(c)
			}
		case c == '%' && i+2 < len(s):
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
			} else {
				b.WriteByte(c)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
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

// WithoutCookies returns the Cookie header values as one header value ("a=1; b=2") without the
// cookies named names, nor any an upstream may read as one of them (ReadsAs: "AT", "a%74"), and
// whether that removed any. Cookies are pairs between ";"; within one, a "," starts a pair too
// for the parsers that split there (and for a proxy that joined two headers), so a pair
// "prefs=a,at=…" loses its "at=…" and keeps "prefs=a", while "prefs=a,b" stays whole.
func WithoutCookies(headers []string, names []string) (cookie string, removed bool) {
	var keep []string
	for _, h := range headers {
		for pair := range strings.SplitSeq(h, ";") {
			var parts []string
			for part := range strings.SplitSeq(pair, ",") {
				k, _, _ := strings.Cut(part, "=")
				if k := strings.TrimSpace(k); k != "" && slices.ContainsFunc(names, func(n string) bool { return ReadsAs(k, n) }) {
					removed = true
					continue
				}
				parts = append(parts, part)
			}
			if p := strings.TrimSpace(strings.Join(parts, ",")); p != "" {
				keep = append(keep, p)
			}
		}
	}
	return strings.Join(keep, "; "), removed
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
