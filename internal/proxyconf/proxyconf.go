// Package proxyconf writes the part of a proxy's configuration that must mirror the authz
// service's identity headers: which headers to copy from an allow to the upstream request, and
// which client copies to clear. `authz proxy-config nginx|traefik|envoy` prints it from the
// service's flags and policy.
package proxyconf

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/platformauth/envoy-okta-authz/token"
)

// Proxies are the proxies a snippet can be written for.
var Proxies = []string{"nginx", "traefik", "envoy"}

// Write returns the snippet for proxy, for the identity headers (lower-case names, the fixed
// x-authz-* ones included), whether the token is forwarded, and the places other than the
// Authorization header the policy reads tokens from (token.Place).
func Write(proxy string, headers []string, forwardAuthorization bool, places []token.Place) (string, error) {
	switch proxy {
	case "nginx":
		return nginx(headers, forwardAuthorization, places), nil
	case "traefik":
		return traefik(headers, forwardAuthorization, places), nil
	case "envoy":
		return envoy(headers, places), nil
	}
	return "", fmt.Errorf("proxy %q is not one of %s", proxy, strings.Join(Proxies, ", "))
}

// The markers of the two identity blocks of deploy/nginx/nginx.conf, which the nginx snippet
// replaces: one on the server level, one in the protected location.
const (
	ServerBegin   = "# BEGIN identity headers: server (authz proxy-config nginx)"
	ServerEnd     = "# END identity headers: server"
	LocationBegin = "# BEGIN identity headers: location (authz proxy-config nginx)"
	LocationEnd   = "# END identity headers: location"
)

// variable is the nginx variable holding a header's value from the auth subrequest (names are
// lower-case letters, digits and dashes: the service refuses any other).
func variable(h string) string { return "$authz_" + strings.ReplaceAll(h, "-", "_") }

// NginxBlocks returns the two identity blocks, each between its markers and indented as in
// deploy/nginx/nginx.conf. A policy that reads tokens from a cookie or a header of their own
// adds to the location block what keeps them from the API (a query token needs nothing in the
// blocks: nginx.conf's proxy_pass forwards the target the service returns, X-Upstream-Uri; the
// snippet names those lines for a configuration of one's own).
func NginxBlocks(headers []string, forward bool, places []token.Place) (server, location string) {
	var sb strings.Builder
	sb.WriteString("        " + ServerBegin + "\n")
	sb.WriteString("        # A client's copy of an identity header never reaches the API: every X-Authz-* header\n")
	sb.WriteString("        # is cleared (headers-more), the named ones are set empty; locations without\n")
	sb.WriteString("        # proxy_set_header of their own (/healthz) inherit these, \"location /\" sets its own.\n")
	sb.WriteString("        more_clear_input_headers \"X-Authz-*\";\n")
	for _, h := range headers {
		fmt.Fprintf(&sb, "        proxy_set_header %s \"\";\n", h)
	}
	sb.WriteString("        " + ServerEnd + "\n")

	var lb strings.Builder
	lb.WriteString("            " + LocationBegin + "\n")
	lb.WriteString("            # The identity the service returned with its 200, set on the upstream request over\n")
	lb.WriteString("            # any client copy (an empty value, an absent claim, removes the header).\n")
	for _, h := range headers {
		fmt.Fprintf(&lb, "            auth_request_set %s $upstream_http_%s;\n", variable(h), strings.ReplaceAll(h, "-", "_"))
	}
	for _, h := range headers {
		fmt.Fprintf(&lb, "            proxy_set_header %s %s;\n", h, variable(h))
	}
	if !forward {
		lb.WriteString("            # The API gets the identity, not the token (nor its DPoP proof).\n")
		lb.WriteString("            proxy_set_header Authorization \"\";\n            proxy_set_header DPoP \"\";\n")
		cookie := false
		for _, p := range places {
			switch {
			case p.Kind == token.InHeader:
				fmt.Fprintf(&lb, "            proxy_set_header %s \"\";\n", p.Name)
			case p.Kind == token.InCookie && !cookie:
				cookie = true
				lb.WriteString("            # The policy reads a token from a cookie: the API gets the Cookie header the\n")
				lb.WriteString("            # service returns on every allow, without its token cookies (none: no Cookie).\n")
				lb.WriteString("            auth_request_set $authz_cookie $upstream_http_cookie;\n")
				lb.WriteString("            proxy_set_header Cookie $authz_cookie;\n")
			}
		}
	}
	lb.WriteString("            " + LocationEnd + "\n")
	return sb.String(), lb.String()
}

func nginx(headers []string, forward bool, places []token.Place) string {
	server, location := NginxBlocks(headers, forward, places)
	var query strings.Builder
	for _, p := range places {
		if p.Kind == token.InQuery && !forward {
			query.WriteString("# The policy reads a token from the query (" + p.String() + "): the API must get the\n")
			query.WriteString("# target the service returns without it. deploy/nginx/nginx.conf does so with these lines\n")
			query.WriteString("# (outside the blocks below); a configuration of your own needs them too, or the API gets\n")
			query.WriteString("# the token:\n")
			query.WriteString("#   http:        map $authz_upstream_uri $authz_target { \"\" $request_uri; default $authz_upstream_uri; }\n")
			query.WriteString("#   location /:  auth_request_set $authz_upstream_uri $upstream_http_x_upstream_uri;\n")
			query.WriteString("#                proxy_pass http://api$authz_target;\n")
			break
		}
	}
	return query.String() + "# deploy/nginx/nginx.conf: replace the server block's identity lines with the first block,\n" +
		"# and the protected location's with the second.\n" + server + location
}

func traefik(headers []string, forward bool, places []token.Place) string {
	var b strings.Builder
	var cookie bool
	var stripped []string // the token headers to keep from the API
	for _, p := range places {
		switch p.Kind {
		case token.InCookie:
			cookie = true
		case token.InHeader:
			stripped = append(stripped, http.CanonicalHeaderKey(p.Name))
		case token.InQuery:
			b.WriteString("# The policy reads a token from the query (" + p.String() + "): Traefik cannot remove it, so the\n")
			b.WriteString("# API receives it (and Traefik's access log, if on, records it). Route such requests\n")
			b.WriteString("# through Envoy (gRPC) or nginx, which keep it from the API.\n")
		}
	}
	if cookie || len(stripped) > 0 {
		b.WriteString("# The service must see the token's places: add to authRequestHeaders\n#   ")
		if cookie {
			stripped = append(stripped, "Cookie")
		}
		b.WriteString(strings.Join(stripped, ", ") + "\n")
	}
	b.WriteString("# deploy/traefik/dynamic.yml, in the forwardAuth middleware: on allow, Traefik removes each\n")
	b.WriteString("# listed header from the request and copies the service's (a client copy never passes).\n")
	b.WriteString("authResponseHeaders:\n")
	for _, h := range headers {
		fmt.Fprintf(&b, "  - %s\n", http.CanonicalHeaderKey(h))
	}
	if cookie && !forward {
		b.WriteString("  # the Cookie header the service returns on every allow (without the policy's token cookies)\n  - Cookie\n")
	}
	b.WriteString("# And a headers middleware for routers without forwardAuth (e.g. /healthz):\n")
	b.WriteString("customRequestHeaders:\n")
	for _, h := range headers {
		fmt.Fprintf(&b, "  %s: \"\"\n", http.CanonicalHeaderKey(h))
	}
	if !forward {
		b.WriteString("# After forwardAuth, a headers middleware that keeps the token from the upstream:\n")
		b.WriteString("#   customRequestHeaders: { Authorization: \"\", DPoP: \"\"")
		for _, p := range places {
			if p.Kind == token.InHeader {
				fmt.Fprintf(&b, ", %s: \"\"", http.CanonicalHeaderKey(p.Name))
			}
		}
		b.WriteString(" }\n")
	}
	return b.String()
}

func envoy(headers []string, places []token.Place) string {
	var b strings.Builder
	var tokenHeaders []string // the token's places the service must see
	for _, p := range places {
		switch p.Kind {
		case token.InCookie:
			tokenHeaders = append(tokenHeaders, "cookie")
		case token.InHeader:
			tokenHeaders = append(tokenHeaders, p.Name)
		case token.InQuery:
			b.WriteString("# The policy reads a token from the query (" + p.String() + "): over gRPC the service\n")
			b.WriteString("# removes it (query_parameters_to_remove); http_service cannot change a query, so there\n")
			b.WriteString("# the API receives it: use gRPC ext_authz for such routes.\n")
		}
	}
	slices.Sort(tokenHeaders)
	tokenHeaders = slices.Compact(tokenHeaders)
	b.WriteString("# gRPC ext_authz (envoy.yaml): nothing to mirror. The service sets each identity header\n")
	b.WriteString("# and lists client copies and the token in headers_to_remove.\n")
	b.WriteString("# http_service (envoy-http.yaml): the service must see client copies, and Envoy must copy\n")
	b.WriteString("# the answer's headers upstream.\n")
	b.WriteString("allowed_headers:\n  patterns:\n    - exact: dpop\n    - exact: x-forwarded-proto\n    - exact: x-request-id\n")
	b.WriteString("    - exact: content-type\n    - exact: x-http-method-override\n    - exact: x-http-method\n    - exact: x-method-override\n")
	writePatterns(&b, "    ", headers)
	for _, h := range tokenHeaders {
		fmt.Fprintf(&b, "    - exact: %s\n", h)
	}
	b.WriteString("http_service:\n  authorization_response:\n    allowed_upstream_headers:\n      patterns:\n")
	writePatterns(&b, "        ", headers)
	if slices.Contains(tokenHeaders, "cookie") {
		b.WriteString("        - exact: cookie   # the Cookie header without the token cookies\n")
	}
	return b.String()
}

// writePatterns writes the x-authz- prefix once and every other header exactly.
func writePatterns(b *strings.Builder, indent string, headers []string) {
	fmt.Fprintf(b, "%s- prefix: x-authz-\n", indent)
	for _, h := range headers {
		if !strings.HasPrefix(h, "x-authz-") {
			fmt.Fprintf(b, "%s- exact: %s\n", indent, h)
		}
	}
}
