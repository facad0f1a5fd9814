// Package httpapi is the HTTP decision API: the same decisions as the gRPC front end, for
// proxies that ask over HTTP — Envoy's ext_authz http_service, nginx's auth_request and Traefik's
// ForwardAuth. It reads the request to judge from the headers of the proxy it is configured for
// (never guessed from what a request happens to carry), asks authz.Authorizer.Decide, and
// answers 200 with the identity headers, or the denial's status, challenge and JSON body. Only
// the proxy may reach it: it trusts that proxy's headers.
package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Server is the HTTP decision API. It only adapts: http.Request → authz.Request, authz.Decision
// → status, headers and body.
//
// Allow is 200 with the identity headers on the response (for Envoy's allowed_upstream_headers
// and nginx's auth_request_set); a denial is 400/401/403 with WWW-Authenticate and a JSON body;
// 503 with Retry-After while no key set is loaded.
type Server struct {
	authz  *authz.Authorizer
	tracer trace.Tracer
	opts   Options
}

// RequestSource names the proxy whose headers tell the HTTP decision API which request to
// judge. The source is configured, not guessed from whatever headers a request carries: a
// client can add headers that some proxies pass on.
type RequestSource string

// The request sources.
const (
	// SourceNginx: X-Original-URI, X-Original-Method and X-Original-Host (deploy/nginx).
	SourceNginx RequestSource = "nginx"
	// SourceTraefik: X-Forwarded-Uri, X-Forwarded-Method and X-Forwarded-Host (forwardAuth).
	SourceTraefik RequestSource = "traefik"
	// SourceEnvoy: the request's own method, path (after PathPrefix) and Host (http_service).
	SourceEnvoy RequestSource = "envoy"
	// SourceAuto: nginx's or Traefik's, when exactly one of the two sets is present; Envoy's
	// when neither is and a PathPrefix is set; otherwise the request is refused.
	SourceAuto RequestSource = "auto"
)

// RequestSources lists the valid sources.
var RequestSources = []RequestSource{SourceAuto, SourceNginx, SourceTraefik, SourceEnvoy}

// Options configure the HTTP decision API.
type Options struct {
	// PathPrefix is stripped from the request path in Envoy http_service mode, where Envoy
	// prepends its path_prefix to the client's path.
	PathPrefix string
	// Source says which headers name the request to judge (default SourceAuto).
	Source RequestSource
	// ClientCertHeader names the header in which the proxy passes the client certificate of
	// the request's mutual TLS (nginx: $ssl_client_escaped_cert; Traefik: passTLSClientCert's
	// X-Forwarded-Tls-Client-Cert), for certificate-bound tokens. Empty: none is read, so
	// certificate-bound tokens are refused on this front end.
	ClientCertHeader string
}

// New returns the HTTP decision API for a.
func New(a *authz.Authorizer, opts Options) *Server {
	opts.PathPrefix = strings.TrimSuffix(opts.PathPrefix, "/")
	if opts.Source == "" {
		opts.Source = SourceAuto
	}
	return &Server{authz: a, tracer: authz.NewTracer(), opts: opts}
}

// envoyHeadersToRemove asks Envoy's HTTP ext_authz filter to remove upstream request headers.
const envoyHeadersToRemove = "x-envoy-auth-headers-to-remove"

// Header values of every allow, in net/http's form (shared: never appended to, see
// upstreamSet).
var (
	canonicalHeadersToRemove = http.CanonicalHeaderKey(envoyHeadersToRemove)
	removeCredentials        = []string{strings.Join(authz.CredentialHeaders, ",")}
	noStore                  = []string{"no-store"}
)

// canonicalOverrideHeaders are the method-override headers in net/http's form, computed once:
// Header.Values would canonicalise (allocate) each name on every request.
var canonicalOverrideHeaders = func() []string {
	var out []string
	for _, k := range policy.MethodOverrideHeaders {
		out = append(out, http.CanonicalHeaderKey(k))
	}
	return out
}()

// ErrRequestSource: the HTTP decision API could not tell which request to judge from the proxy's
// headers (missing, or another proxy's set present too).
var ErrRequestSource = &authz.Reason{Code: "request_source", Description: "The proxy did not say which request to authorize"}

// decisionHeaderPrefix names the headers that carry the decision's log fields to Envoy's
// http_service (dynamic_metadata_from_headers); "decision" itself is the bare prefix.
const decisionHeaderPrefix = "x-decision"

func (s *Server) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r, src, clientIdentity := s.requestFromHTTP(req)
	ctx, span := authz.StartSpan(req.Context(), s.tracer, "authz.HTTPCheck", propagation.HeaderCarrier(req.Header))
	d := s.authz.Decide(ctx, r)
	authz.EndSpan(span, &d)
	h := w.Header()
	if src == SourceEnvoy {
		// Only Envoy reads these (into its access log); nginx and Traefik would pass them to
		// the client with a denial.
		for _, f := range d.LogFields() {
			name := decisionHeaderPrefix
			if f.Name != "decision" {
				name += "-" + strings.ReplaceAll(f.Name, "_", "-")
			}
			h.Set(name, f.Value)
		}
	}
	if d.Outcome == authz.Allow {
		keys, values := d.UpstreamHTTP()
		for i, k := range keys {
			h[k] = values[i]
		}
		s.credentialAnswer(h, &d, r, req)
		switch rm := d.RemovedHeaders(d.UpstreamHeaders(), clientIdentity); {
		case slices.Equal(rm, authz.CredentialHeaders):
			h[canonicalHeadersToRemove] = removeCredentials
		case len(rm) > 0:
			h.Set(envoyHeadersToRemove, strings.Join(rm, ","))
		}
		h["Cache-Control"] = noStore
		w.WriteHeader(http.StatusOK)
		return
	}
	for _, c := range d.ClientHeaders(s.authz.Challenges()) {
		h.Set(c.Name, c.Value)
	}
	w.WriteHeader(d.HTTPStatus())
	_, _ = w.Write(d.Body())
}

// Headers of an allow that keep a token from the upstream when it came from elsewhere than
// the Authorization header (a header of its own is named in x-envoy-auth-headers-to-remove).
const (
	// upstreamURIHeader is the request target without the token's query parameter, for the
	// shipped nginx.conf's proxy_pass (Envoy's http_service and Traefik cannot change a query).
	upstreamURIHeader = "X-Upstream-Uri"
	// upstreamCookieHeader is the Cookie header the upstream gets, on every allow under a
	// policy that reads a token from a cookie (an absent one means: none): Traefik copies it
	// (authResponseHeaders), Envoy too (allowed_upstream_headers), nginx sets it.
	upstreamCookieHeader = "Cookie"
)

// credentialAnswer adds to an allow's answer what keeps a token from a query parameter or a
// cookie from the upstream.
func (s *Server) credentialAnswer(h http.Header, d *authz.Decision, r *authz.Request, req *http.Request) {
	if name := d.RemovedQueryParameter(); name != "" {
		h.Set(upstreamURIHeader, token.WithoutQueryParameter(r.Path, name))
	}
	if !r.Policy.ReadsCookies() {
		return
	}
	cookie, set := d.UpstreamCookie()
	if !set && !d.CookieChanged() { // the request's own: it held no token cookie, or the rule forwards it
		cookie = strings.Join(req.Header.Values("Cookie"), "; ")
	}
	if cookie != "" {
		h.Set(upstreamCookieHeader, cookie)
	}
}

// The headers each proxy sets to name the request it asks about.
var (
	nginxHeaders   = []string{"X-Original-Uri", "X-Original-Method", "X-Original-Host"}
	traefikHeaders = []string{"X-Forwarded-Uri", "X-Forwarded-Method"}
)

// requestFromHTTP reads the request to judge from the headers of the configured proxy. A
// request that carries another proxy's set too, or lacks its own, is marked invalid (and
// refused by Decide), never judged by a fallback. It also returns the source it read (auto
// resolved) and the names of client-sent identity headers, which must not reach the upstream.
func (s *Server) requestFromHTTP(req *http.Request) (*authz.Request, RequestSource, []string) {
	pol := s.authz.Policy() // one policy for the whole request: its identity headers and the decision
	r := &authz.Request{
		Frontend:      "http",
		Policy:        pol,
		Authorization: req.Header.Values("Authorization"),
		DPoP:          req.Header.Values("DPoP"),
		RequestID:     req.Header.Get("X-Request-Id"),
		// The client's headers, as nginx's subrequest and Envoy's http_service pass them, and
		// Traefik when authRequestHeaders lists them. The body is never seen: nginx's
		// subrequest drops Content-Length.
		ContentType: req.Header.Get("Content-Type"),
		Body:        policy.BodyUnknown,
		// Every proxy here reports the client's scheme in X-Forwarded-Proto (nginx.conf sets
		// it; Traefik and Envoy set it themselves).
		Scheme:  req.Header.Get("X-Forwarded-Proto"),
		Headers: httpHeaders(req.Header),
	}
	if r.Scheme == "" {
		r.Scheme = "http"
		if req.TLS != nil {
			r.Scheme = "https"
		}
	}
	if s.opts.ClientCertHeader != "" {
		r.ClientCert = req.Header.Get(s.opts.ClientCertHeader)
	}
	for _, k := range canonicalOverrideHeaders {
		r.MethodOverrides = append(r.MethodOverrides, req.Header[k]...)
	}
	h := req.Header
	hasNginx := slices.ContainsFunc(nginxHeaders, func(k string) bool { return len(h.Values(k)) > 0 })
	hasTraefik := slices.ContainsFunc(traefikHeaders, func(k string) bool { return len(h.Values(k)) > 0 })
	invalid := func(format string, a ...any) {
		r.Invalid, r.InvalidDetail = ErrRequestSource, fmt.Sprintf(format, a...)
	}
	src := s.opts.Source
	if src == SourceAuto {
		switch {
		case hasNginx && hasTraefik:
			invalid("both nginx's (X-Original-*) and Traefik's (X-Forwarded-Uri, -Method) request headers are present")
		case hasNginx:
			src = SourceNginx
		case hasTraefik:
			src = SourceTraefik
		case s.opts.PathPrefix != "":
			src = SourceEnvoy
		default:
			invalid("no request headers of nginx (X-Original-URI) or Traefik (X-Forwarded-Uri), and no --http-path-prefix for Envoy's http_service")
		}
	}
	var err error
	switch src {
	case SourceNginx:
		if hasTraefik {
			invalid("Traefik's X-Forwarded-Uri or -Method present, but the request source is nginx")
			break
		}
		if r.Path, r.Method, r.Host, err = one(h, nginxHeaders[0], nginxHeaders[1], nginxHeaders[2]); err != nil {
			invalid("nginx request headers: %v", err)
		}
	case SourceTraefik:
		if hasNginx {
			invalid("nginx's X-Original-* present, but the request source is Traefik")
			break
		}
		if r.Path, r.Method, r.Host, err = one(h, traefikHeaders[0], traefikHeaders[1], "X-Forwarded-Host"); err != nil {
			invalid("Traefik request headers: %v", err)
		}
	case SourceEnvoy:
		if hasNginx || hasTraefik {
			invalid("X-Original-* or X-Forwarded-Uri/-Method present, but the request source is Envoy")
			break
		}
		r.Method, r.Host, r.Path = req.Method, req.Host, req.RequestURI
		if p := s.opts.PathPrefix; p != "" {
			rest, ok := strings.CutPrefix(r.Path, p)
			if !ok || !strings.HasPrefix(rest, "/") {
				invalid("the path does not start with the http path prefix %s", p)
			}
			r.Path = rest
		}
	}
	var identity []string
	for name := range req.Header {
		if pol.IsIdentityHeaderFold(name) {
			identity = append(identity, strings.ToLower(name))
		}
	}
	return r, src, identity
}

// httpHeaders are the request's headers, read by lower-case name only when a rule asks.
type httpHeaders http.Header

func (h httpHeaders) Values(name string) []string { return http.Header(h).Values(name) }

func (h httpHeaders) Each(fn func(name, value string)) {
	for k, vs := range h {
		k = strings.ToLower(k)
		for _, v := range vs {
			fn(k, v)
		}
	}
}

// one returns the values of the three headers, each of which must be present exactly once.
func one(h http.Header, uri, method, host string) (string, string, string, error) {
	var out [3]string
	for i, k := range []string{uri, method, host} {
		switch vs := h.Values(k); {
		case len(vs) == 0 || vs[0] == "":
			return "", "", "", fmt.Errorf("%s is missing", k)
		case len(vs) > 1:
			return "", "", "", fmt.Errorf("%s is repeated", k)
		default:
			out[i] = vs[0]
		}
	}
	return out[0], out[1], out[2], nil
}
