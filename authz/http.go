package authz

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HTTPServer is the HTTP decision API: the same decisions for proxies that ask over HTTP —
// Envoy's ext_authz http_service, nginx auth_request and Traefik ForwardAuth. It only adapts:
// http.Request → Request, Decision → status, headers and body.
//
// Allow is 200 with the identity headers on the response (for Envoy's allowed_upstream_headers
// and nginx's auth_request_set); a denial is 401/403 with WWW-Authenticate and a JSON body; 503
// with Retry-After while no key set is loaded.
type HTTPServer struct {
	authz  *Authorizer
	tracer trace.Tracer
	// pathPrefix is stripped from the request path in Envoy http_service mode, where Envoy
	// prepends its path_prefix to the client's path.
	pathPrefix string
}

// NewHTTPServer returns the HTTP decision API for a.
func NewHTTPServer(a *Authorizer, pathPrefix string) *HTTPServer {
	return &HTTPServer{authz: a, tracer: newTracer(), pathPrefix: strings.TrimSuffix(pathPrefix, "/")}
}

// envoyHeadersToRemove asks Envoy's HTTP ext_authz filter to remove upstream request headers.
const envoyHeadersToRemove = "x-envoy-auth-headers-to-remove"

func (s *HTTPServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r, clientIdentity := s.requestFromHTTP(req)
	ctx, span := startSpan(req.Context(), s.tracer, "authz.HTTPCheck", propagation.HeaderCarrier(req.Header))
	d := s.authz.Decide(ctx, r)
	endSpan(span, &d)
	h := w.Header()
	if d.Outcome == Allow {
		upstream := d.UpstreamHeaders()
		for _, u := range upstream {
			h.Set(u.Name, u.Value)
		}
		if rm := headersToRemove(upstream, clientIdentity); len(rm) > 0 {
			h.Set(envoyHeadersToRemove, strings.Join(rm, ","))
		}
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return
	}
	for _, c := range d.ClientHeaders(s.authz.Realm()) {
		h.Set(c.Name, c.Value)
	}
	w.WriteHeader(d.HTTPStatus())
	_, _ = w.Write(d.Body())
}

// requestFromHTTP recognises the three request shapes:
//   - nginx auth_request: X-Original-URI (and X-Original-Method), set in nginx.conf;
//   - Traefik ForwardAuth: X-Forwarded-Method, -Proto, -Host, -Uri;
//   - Envoy http_service: the client's method and path (after path_prefix), with Host.
//
// These headers are trusted because only the proxy can reach this listener; see the README.
func (s *HTTPServer) requestFromHTTP(req *http.Request) (*Request, []string) {
	r := &Request{
		Frontend:      "http",
		Method:        req.Method,
		Host:          req.Host,
		Path:          req.URL.RequestURI(),
		Authorization: req.Header.Values("Authorization"),
		RequestID:     req.Header.Get("X-Request-Id"),
	}
	switch {
	case req.Header.Get("X-Original-URI") != "":
		r.Path = req.Header.Get("X-Original-URI")
		r.Method = firstNonEmpty(req.Header.Get("X-Original-Method"), r.Method)
		r.Host = firstNonEmpty(req.Header.Get("X-Original-Host"), r.Host)
	case req.Header.Get("X-Forwarded-Uri") != "":
		r.Path = req.Header.Get("X-Forwarded-Uri")
		r.Method = firstNonEmpty(req.Header.Get("X-Forwarded-Method"), r.Method)
		r.Host = firstNonEmpty(req.Header.Get("X-Forwarded-Host"), r.Host)
	case s.pathPrefix != "":
		if rest, ok := strings.CutPrefix(r.Path, s.pathPrefix); ok && (rest == "" || rest[0] == '/' || rest[0] == '?') {
			r.Path = "/" + strings.TrimPrefix(rest, "/")
		}
	}
	var identity []string
	for name := range req.Header {
		if lower := strings.ToLower(name); strings.HasPrefix(lower, IdentityHeaderPrefix) {
			identity = append(identity, lower)
		}
	}
	return r, identity
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
