package policy

import (
	"net/url"
	"slices"
	"strings"

	"github.com/platformauth/envoy-okta-authz/token"
)

// The headers by which a client asks the upstream to run a request under another method, as
// Symfony and Laravel (by default, on POST), Express's method-override, gorilla's
// HTTPMethodOverrideHandler and Rack::MethodOverride honour them.
var MethodOverrideHeaders = []string{"x-http-method-override", "x-http-method", "x-method-override"}

// IsMethodOverrideHeader reports whether a lower-case header name is one of them.
func IsMethodOverrideHeader(name string) bool { return slices.Contains(MethodOverrideHeaders, name) }

// ErrMethodOverrides: the request names more methods to run as (override headers, _method
// parameters) than it can be judged under.
var ErrMethodOverrides = &token.Reason{Code: "method_overrides", Description: "The request names too many method overrides"}

// MaxMethods bounds the methods a request is judged under: its own, GET for a HEAD, and what
// overrides name. A request naming more is refused rather than judged under some of them.
const MaxMethods = 8

// anyOtherMethod stands for every method no rule names, among the methods a form body's
// _method may choose: it matches exactly the rules without a methods condition. It is not a
// token, so no rule can name it.
const anyOtherMethod = "*"

// Methods appends to dst every method the upstream may run r under, r's own first (upper
// case), and returns it; ok is false when r names more than MaxMethods. Only when some rule
// names methods can another method select another rule; otherwise r's own is all.
//   - HEAD runs as GET (Go's ServeMux and Express serve HEAD with the GET handler);
//   - unless the policy says its upstream ignores overrides: the method each override header
//     names, the method a _method query parameter names (Symfony, Laravel), and, for a POST
//     whose body may be a form (a form content type, or none: Rack parses those as forms too),
//     every method the rules name and any other — the body's _method (Rails, Symfony,
//     Laravel), which the service cannot read.
func (p *Policy) Methods(dst []string, r *Request) ([]string, bool) {
	own := strings.ToUpper(r.Method)
	dst = append(dst, own)
	if !p.MethodReadings {
		return dst, true
	}
	add := func(m string) {
		if !slices.Contains(dst, m) {
			dst = append(dst, m)
		}
	}
	if own == "HEAD" {
		add("GET")
	}
	if !p.MethodOverride {
		return dst, true
	}
	for _, v := range r.MethodOverrides {
		for m := range strings.SplitSeq(v, ",") { // Envoy joins repeated headers with ","
			if m = strings.ToUpper(strings.TrimSpace(m)); methodToken.MatchString(m) {
				add(m)
			}
		}
	}
	for _, m := range queryMethods(r.Path) {
		add(m)
	}
	if own == "POST" && mayBeForm(r.ContentType, r.Body) {
		for _, m := range p.ruleMethods {
			add(m)
		}
		add(anyOtherMethod)
	}
	return dst, len(dst) <= MaxMethods
}

// queryMethods returns the methods the _method parameters of target's query name, upper case.
// A name is read as the upstreams read theirs (token.ReadsAs): percent-decoded, case aside,
// with PHP's " ", "." and "[" as "_" and its cut at a NUL ("%2Emethod", "_method%00x" are
// _method to PHP), and pairs split at ";" too (Rack).
func queryMethods(target string) []string {
	_, q, ok := strings.Cut(target, "?")
	if !ok || !strings.Contains(strings.ToLower(q), "method") && !strings.Contains(q, "%") && !strings.Contains(q, "+") {
		return nil // the common case: no parameter can be _method
	}
	var out []string
	for pair := range strings.FieldsFuncSeq(q, func(r rune) bool { return r == '&' || r == ';' }) {
		name, value, _ := strings.Cut(pair, "=")
		if !token.ReadsAs(name, "_method") {
			continue
		}
		if value, err := url.QueryUnescape(value); err == nil {
			if m := strings.ToUpper(strings.TrimSpace(value)); methodToken.MatchString(m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// Body says whether a request carries a body, as far as its proxy tells.
type Body uint8

// The values of Body.
const (
	BodyUnknown Body = iota // the proxy does not say (nginx's subrequest drops Content-Length)
	BodyNone                // no Content-Length (or 0) and no Transfer-Encoding on HTTP/1
	BodyPresent
)

// mayBeForm reports whether a request body may be parsed as a form: a form content type, or
// none at all on a request that may have a body (Rack parses those as forms). The media type
// ends where PHP's and Rack's end it — at ";", "," or white space
// ("application/x-www-form-urlencoded,text/plain" is a form to them).
func mayBeForm(contentType string, body Body) bool {
	mt := strings.TrimLeft(contentType, " \t")
	if i := strings.IndexAny(mt, ";, \t"); i >= 0 {
		mt = mt[:i]
	}
	switch strings.ToLower(mt) {
	case "application/x-www-form-urlencoded", "multipart/form-data":
		return true
	case "":
		return body != BodyNone
	}
	return false
}
