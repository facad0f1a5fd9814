// Package envoytest plays Envoy's part in tests, as Envoy v1.38.0 plays it: it loads the
// project's Envoy configurations as Envoy does (strict schema, Envoy's validation rules), and
// normalises paths, picks routes and applies CheckResponses and http_service answers the way
// Envoy's source does, since no Envoy binary runs here.
//
// Read from Envoy's source at the v1.38.0 release (the commit "repo: Release v1.38.0", f1dd21b
// in botengyao/envoy, which the envoyproxy/envoy tag points at too); each function names the
// code it follows, so that a change relying on something Envoy does not do fails a test.
package envoytest

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// Every extension type the configurations name, so that their Any fields resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Proxy is a front proxy configuration: one listener with one HTTP connection manager.
type Proxy struct {
	Bootstrap *bootstrapv3.Bootstrap
	HCM       *hcmv3.HttpConnectionManager
	ExtAuthz  *extauthzv3.ExtAuthz
	Clusters  map[string]*clusterv3.Cluster
	Routes    []*routev3.Route // of the first virtual host, in order
}

// Load parses an Envoy YAML file the way Envoy does (YAML → JSON → proto, unknown fields
// rejected), runs the protoc-gen-validate rules from Envoy's protos on it and on the typed
// configs it holds, and returns its front proxy.
func Load(path string) (*Proxy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("%s does not match Envoy's schema: %w", path, err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%s fails Envoy's validation rules: %w", path, err)
	}
	p := &Proxy{Bootstrap: &b, Clusters: map[string]*clusterv3.Cluster{}}
	for _, c := range b.GetStaticResources().GetClusters() {
		p.Clusters[c.GetName()] = c
	}
	ls := b.GetStaticResources().GetListeners()
	if len(ls) == 0 || len(ls[0].GetFilterChains()) == 0 || len(ls[0].GetFilterChains()[0].GetFilters()) != 1 {
		return nil, fmt.Errorf("%s: want a listener with one network filter", path)
	}
	p.HCM = &hcmv3.HttpConnectionManager{}
	if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(p.HCM); err != nil {
		return nil, fmt.Errorf("%s: http_connection_manager: %w", path, err)
	}
	if err := p.HCM.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%s: http_connection_manager: %w", path, err)
	}
	for _, f := range p.HCM.GetHttpFilters() {
		if f.GetName() == "envoy.filters.http.ext_authz" {
			p.ExtAuthz = &extauthzv3.ExtAuthz{}
			if err := f.GetTypedConfig().UnmarshalTo(p.ExtAuthz); err != nil {
				return nil, fmt.Errorf("%s: ext_authz: %w", path, err)
			}
			if err := p.ExtAuthz.ValidateAll(); err != nil {
				return nil, fmt.Errorf("%s: ext_authz: %w", path, err)
			}
		}
	}
	if vhs := p.HCM.GetRouteConfig().GetVirtualHosts(); len(vhs) > 0 {
		p.Routes = vhs[0].GetRoutes()
	}
	for _, r := range p.Routes {
		if _, err := PerRoute(r); err != nil {
			return nil, fmt.Errorf("%s: route %v: %w", path, r.GetMatch(), err)
		}
	}
	return p, nil
}

// PerRoute returns a route's ExtAuthzPerRoute (nil when unset).
func PerRoute(r *routev3.Route) (*extauthzv3.ExtAuthzPerRoute, error) {
	anyCfg, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
	if !ok {
		return nil, nil
	}
	pr := &extauthzv3.ExtAuthzPerRoute{}
	if err := anyCfg.UnmarshalTo(pr); err != nil {
		return nil, err
	}
	return pr, pr.ValidateAll()
}

// Route returns the first route whose match covers path (a :path, query included), as the
// router picks it: exact path or prefix, on the path without the query, case-sensitive unless
// the route says otherwise (source/common/router/config_impl.cc PathRouteEntryImpl and
// PrefixRouteEntryImpl). Nil when none does.
func (p *Proxy) Route(path string) *routev3.Route {
	path, _, _ = strings.Cut(path, "?")
	for _, r := range p.Routes {
		m := r.GetMatch()
		cs := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
		eq := func(a, b string) bool { return a == b || !cs && strings.EqualFold(a, b) }
		switch {
		case m.GetPath() != "" && eq(path, m.GetPath()):
			return r
		case m.GetPrefix() != "" && len(path) >= len(m.GetPrefix()) && eq(path[:len(m.GetPrefix())], m.GetPrefix()):
			return r
		}
	}
	return nil
}

// NormalisePath is what the HTTP connection manager makes of a request's :path before ext_authz
// and the router see it, under the HCM's normalize_path, merge_slashes and
// path_with_escaped_slashes_action. ok is false where Envoy answers 400 itself.
//
// source/common/http/conn_manager_utility.cc maybeNormalizePath: a "#" is rejected (runtime
// http_reject_path_with_fragment, on by default); REJECT_REQUEST refuses %2F, %2f, %5C, %5c in
// the path (PathUtil::unescapeSlashes; unset is KEEP_UNCHANGED); normalize_path canonicalises
// the path part with Chromium's URL library (PathUtil::canonicalPath; cases in
// test/common/http/path_utility_test.cc: "\" is a separator, %2E is a dot, dot segments are
// resolved and clamped at the root, other escapes are kept as sent, %00 is invalid);
// merge_slashes then merges repeated slashes in the path part (PathUtil::mergeSlashes).
func (p *Proxy) NormalisePath(target string) (string, bool) {
	return NormalisePath(target, p.HCM.GetNormalizePath().GetValue(), p.HCM.GetMergeSlashes(),
		p.HCM.GetPathWithEscapedSlashesAction() == hcmv3.HttpConnectionManager_REJECT_REQUEST)
}

// NormalisePath is Proxy.NormalisePath with the three settings given.
func NormalisePath(target string, normalize, mergeSlashes, rejectEscapedSlashes bool) (string, bool) {
	target, ok := originForm(target)
	if !ok || strings.Contains(target, "#") {
		return "", false
	}
	path, query, hasQuery := strings.Cut(target, "?")
	if rejectEscapedSlashes {
		lower := strings.ToLower(path)
		if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
			return "", false
		}
	}
	if normalize {
		if path, ok = chromiumCanonicalPath(path); !ok {
			return "", false
		}
	}
	if mergeSlashes && strings.Contains(path, "//") {
		var segs []string
		for _, s := range strings.Split(path, "/") {
			if s != "" {
				segs = append(segs, s)
			}
		}
		merged := "/" + strings.Join(segs, "/")
		if strings.HasSuffix(path, "/") && merged != "/" {
			merged += "/"
		}
		path = merged
	}
	if hasQuery {
		path += "?" + query
	}
	return path, true
}

// originForm is the :path Envoy's HTTP/1 codec makes of a request target: an origin-form
// target as it is, the path and query of an absolute-form one (allow_absolute_url is on by
// default); anything else is refused (source/common/http/http1/codec_impl.cc).
func originForm(target string) (string, bool) {
	if strings.HasPrefix(target, "/") {
		return target, true
	}
	lower := strings.ToLower(target)
	for _, scheme := range []string{"http://", "https://"} {
		if strings.HasPrefix(lower, scheme) {
			rest := target[len(scheme):]
			if i := strings.IndexAny(rest, "/?"); i >= 0 {
				if rest[i] == '?' {
					return "/" + rest[i:], true
				}
				return rest[i:], true
			}
			return "/", true
		}
	}
	return "", false
}

// chromiumCanonicalPath models url::CanonicalizePath as Envoy's tests pin it: escaped
// unreserved characters decoded (so %2E is a dot), other escapes kept, characters a path may
// not hold raw escaped, "\" a separator, dot segments resolved and clamped at the root.
func chromiumCanonicalPath(p string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			b.WriteByte('/')
		case c == '%' && i+2 < len(p) && isHexByte(p[i+1:i+3]):
			v64, _ := strconv.ParseUint(p[i+1:i+3], 16, 8)
			v := byte(v64)
			switch {
			case v == 0:
				return "", false
			case isUnreserved(v):
				b.WriteByte(v)
			default:
				b.WriteString(p[i : i+3])
			}
			i += 2
		case c <= 0x20 || c >= 0x7f || strings.IndexByte("\"<>`{}", c) >= 0:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	segs := strings.Split(b.String(), "/")[1:]
	var out []string
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/"), true
}

// isHexByte reports whether s is two hex digits. (The model keeps its own helpers: it must not
// share the service's canonicaliser, or a bug in one would hide in the other.)
func isHexByte(s string) bool {
	_, err := strconv.ParseUint(s, 16, 8)
	return err == nil && !strings.ContainsAny(s, "+-")
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// LocalReply is an answer Envoy sends the client itself instead of forwarding the request.
type LocalReply struct {
	Status int
	Header http.Header
	Body   string
}

// ApplyCheckResponse applies the answer of a Check call (a response, or the call's error) to
// the upstream request's headers as the ext_authz filter does, or returns the local reply of a
// denial or an error, rewritten by local_reply_config (RewriteLocalReply). A gRPC error (or
// timeout) is "could not decide": status_on_error, no headers, no body (failure_mode_allow off).
//
// source/extensions/filters/common/ext_authz/ext_authz_grpc_impl.cc: status OK is an allow,
// any other code a denial (an error only with error_response); an ok_response header is
// "append" only when its deprecated `append` flag is true — append_action is not read for
// upstream headers — and "set" otherwise; a denial's status defaults to 403.
// source/extensions/filters/http/ext_authz/ext_authz.cc onComplete: on allow, headers to set
// replace every copy (setCopy), headers to append are appended only to an existing header,
// then headers_to_remove are removed (never :-pseudo headers or host). On denial only the
// "set" headers reach the client (sendLocalReply: remove each, then add each, so two entries
// of a name give two lines); "append" ones are dropped.
func (p *Proxy) ApplyCheckResponse(upstream http.Header, resp *authv3.CheckResponse, callErr error) (*LocalReply, error) {
	if callErr != nil {
		return p.errorReply()
	}
	if resp.GetStatus().GetCode() != 0 {
		reply := &LocalReply{Status: 403, Header: http.Header{}}
		d := resp.GetDeniedResponse()
		if code := int(d.GetStatus().GetCode()); code > 0 {
			reply.Status = code
		}
		for _, h := range d.GetHeaders() {
			if h.GetAppend().GetValue() {
				continue
			}
			reply.Header.Add(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		reply.Body = d.GetBody()
		return reply, p.RewriteLocalReply(reply)
	}
	ok := resp.GetOkResponse()
	for _, h := range ok.GetHeaders() {
		k, v := h.GetHeader().GetKey(), h.GetHeader().GetValue()
		if h.GetAppend().GetValue() {
			if existing := upstream.Values(k); len(existing) > 0 {
				upstream.Set(k, strings.Join(existing, ",")+","+v)
			}
			continue
		}
		upstream.Set(k, v)
	}
	for _, k := range ok.GetHeadersToRemove() {
		if strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") {
			continue
		}
		upstream.Del(k)
	}
	return nil, nil
}

// UpstreamPath is the :path an allow sends upstream: the request's, with the query parameters
// the OkHttpResponse sets and removes. source/extensions/filters/http/ext_authz/ext_authz.cc
// onComplete: when either list is not empty, the query string is parsed without decoding
// (Http::Utility::QueryParamsMulti::parseQueryString), each parameter to set overwrites every
// value of its name, each one to remove erases every value of its name as sent (case-sensitive,
// never decoded), and the query is rebuilt (replaceQueryString): its names in sorted order (a
// btree map), each value "name=value" — a bare "name" gains "=" — and no "?" when none remains;
// the path before "?" is kept as it is.
func UpstreamPath(path string, ok *authv3.OkHttpResponse) string {
	if len(ok.GetQueryParametersToSet()) == 0 && len(ok.GetQueryParametersToRemove()) == 0 {
		return path
	}
	base, query, hasQuery := strings.Cut(path, "?")
	params := map[string][]string{}
	if hasQuery {
		for start := 0; start < len(query); {
			end := strings.IndexByte(query[start:], '&')
			if end < 0 {
				end = len(query)
			} else {
				end += start
			}
			name, value, _ := strings.Cut(query[start:end], "=")
			params[name] = append(params[name], value)
			start = end + 1
		}
	}
	for _, p := range ok.GetQueryParametersToSet() {
		params[p.GetKey()] = []string{p.GetValue()}
	}
	for _, name := range ok.GetQueryParametersToRemove() {
		delete(params, name)
	}
	delim := "?"
	for _, name := range slices.Sorted(maps.Keys(params)) {
		for _, v := range params[name] {
			base += delim + name + "=" + v
			delim = "&"
		}
	}
	return base
}

// ServiceRequest is the request Envoy's http_service client sends the authz service.
type ServiceRequest struct {
	Method, Target, Host string
	Header               http.Header
}

// HTTPServiceRequest is what the http_service client sends for a client request (method, its
// normalised :path, :authority, headers): the client's method, path_prefix + the path, its
// :authority as Host, Content-Length 0, and of the client's headers only those the ext_authz
// filter's allowed_headers match plus Authorization — the other headers never reach the
// service. source/extensions/filters/http/ext_authz/ext_authz.cc FilterConfig (allowed_headers,
// or the deprecated authorization_request.allowed_headers when set; the http flavour adds
// authorization, :method, :path, :authority), source/extensions/filters/common/ext_authz/
// check_request_utils.cc setHttpRequest (repeated headers joined with ","),
// ext_authz_http_impl.cc RawHttpClientImpl::check.
func (p *Proxy) HTTPServiceRequest(method, path, authority string, header http.Header) ServiceRequest {
	hs := p.ExtAuthz.GetHttpService()
	allowed := p.ExtAuthz.GetAllowedHeaders().GetPatterns()
	if hs.GetAuthorizationRequest().GetAllowedHeaders() != nil {
		allowed = hs.GetAuthorizationRequest().GetAllowedHeaders().GetPatterns()
	}
	out := ServiceRequest{Method: method, Target: hs.GetPathPrefix() + path, Host: authority,
		Header: http.Header{"Content-Length": {"0"}}}
	for k, vs := range header {
		lower := strings.ToLower(k)
		if lower != "authorization" && !matchAny(allowed, lower) {
			continue
		}
		out.Header.Set(k, strings.Join(vs, ","))
	}
	for _, h := range hs.GetAuthorizationRequest().GetHeadersToAdd() {
		out.Header.Set(h.GetKey(), h.GetValue())
	}
	return out
}

// ApplyHTTPServiceAnswer applies the authz service's answer to the upstream request's headers
// as the ext_authz filter does in http_service mode, or returns the local reply.
//
// source/extensions/filters/common/ext_authz/ext_authz_http_impl.cc toResponse: a 5xx is an
// error — the filter answers status_on_error (403 unless configured) with no headers and no
// body (errorResponse, and onComplete's Error branch with failure_mode_allow off); only 200
// allows: headers matching allowed_upstream_headers are set on the upstream request (each
// replacing every copy), those matching allowed_upstream_headers_to_append added, then the
// names listed in x-envoy-auth-headers-to-remove removed; any other status denies with that
// status, the body, and only the headers allowed_client_headers matches (plus :status,
// content-length, www-authenticate and location; every header but host when the list is empty).
func (p *Proxy) ApplyHTTPServiceAnswer(upstream http.Header, status int, answer http.Header, body string) (*LocalReply, error) {
	resp := p.ExtAuthz.GetHttpService().GetAuthorizationResponse()
	if status >= 500 {
		return p.errorReply()
	}
	if status != http.StatusOK {
		reply := &LocalReply{Status: status, Header: http.Header{}, Body: body}
		allowed := resp.GetAllowedClientHeaders().GetPatterns()
		for k, vs := range answer {
			lower := strings.ToLower(k)
			pass := matchAny(allowed, lower) || lower == "content-length" || lower == "www-authenticate" || lower == "location"
			if len(allowed) == 0 {
				pass = lower != "host"
			}
			if pass {
				reply.Header[k] = vs
			}
		}
		return reply, p.RewriteLocalReply(reply)
	}
	var remove []string
	for _, v := range answer.Values("X-Envoy-Auth-Headers-To-Remove") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				remove = append(remove, name)
			}
		}
	}
	for k, vs := range answer {
		lower := strings.ToLower(k)
		if lower == "x-envoy-auth-headers-to-remove" {
			continue
		}
		if matchAny(resp.GetAllowedUpstreamHeaders().GetPatterns(), lower) {
			upstream[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
		}
		if matchAny(resp.GetAllowedUpstreamHeadersToAppend().GetPatterns(), lower) {
			for _, v := range vs {
				upstream.Add(k, v)
			}
		}
	}
	for _, k := range remove {
		if !strings.HasPrefix(k, ":") && !strings.EqualFold(k, "host") {
			upstream.Del(k)
		}
	}
	return nil, nil
}

// matchAny reports whether a lower-case header name matches one of the string matchers (exact,
// prefix, suffix, contains; ignore_case honoured). A matcher kind this stand-in does not model
// matches nothing, so a test relying on it fails.
func matchAny(ms []*matcherv3.StringMatcher, name string) bool {
	for _, m := range ms {
		n := name
		eq := func(a, b string) bool { return a == b }
		if m.GetIgnoreCase() {
			n = strings.ToLower(n)
			eq = strings.EqualFold
		}
		switch {
		case m.GetExact() != "" && eq(n, m.GetExact()),
			m.GetPrefix() != "" && len(n) >= len(m.GetPrefix()) && eq(n[:len(m.GetPrefix())], m.GetPrefix()),
			m.GetSuffix() != "" && len(n) >= len(m.GetSuffix()) && eq(n[len(n)-len(m.GetSuffix()):], m.GetSuffix()),
			m.GetContains() != "" && strings.Contains(n, strings.ToLower(m.GetContains())):
			return true
		}
	}
	return false
}

// errorReply is the filter's answer when it could not decide: status_on_error (403 unless
// configured), no headers, no body — then local_reply_config.
func (p *Proxy) errorReply() (*LocalReply, error) {
	reply := &LocalReply{Status: 403, Header: http.Header{}}
	if c := int(p.ExtAuthz.GetStatusOnError().GetCode()); c > 0 {
		reply.Status = c
	}
	return reply, p.RewriteLocalReply(reply)
}

// RewriteLocalReply applies the connection manager's local_reply_config to a local reply of
// the ext_authz filter (which flags its replies UAEX, denials and errors alike): the first
// mapper whose filter matches sets its status_code, headers_to_add, body and
// body_format_override (source/common/local_reply/local_reply.cc ResponseMapper). Filters
// other than status_code_filter, response_flag_filter, and_filter and or_filter are not
// modelled: they are an error, so a test relying on one fails.
func (p *Proxy) RewriteLocalReply(r *LocalReply) error {
	for _, m := range p.HCM.GetLocalReplyConfig().GetMappers() {
		ok, err := matchesLocalReply(m.GetFilter(), r.Status)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if m.GetStatusCode() != nil {
			r.Status = int(m.GetStatusCode().GetValue())
		}
		for _, h := range m.GetHeadersToAdd() {
			k, v := h.GetHeader().GetKey(), h.GetHeader().GetValue()
			switch h.GetAppendAction() {
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
				r.Header.Set(k, v)
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				if r.Header.Get(k) == "" {
					r.Header.Set(k, v)
				}
			default:
				r.Header.Add(k, v)
			}
		}
		if b := m.GetBody(); b != nil {
			r.Body = b.GetInlineString()
		}
		if f := m.GetBodyFormatOverride(); f != nil {
			switch {
			case f.GetJsonFormat() != nil:
				js, err := json.Marshal(f.GetJsonFormat().AsMap())
				if err != nil {
					return err
				}
				r.Body = string(js)
				r.Header.Set("Content-Type", "application/json")
			case f.GetTextFormat() != "":
				r.Body = f.GetTextFormat()
				r.Header.Set("Content-Type", "text/plain")
			default:
				return fmt.Errorf("body_format_override %v is not modelled", f)
			}
			if ct := f.GetContentType(); ct != "" {
				r.Header.Set("Content-Type", ct)
			}
		}
		return nil
	}
	return nil
}

func matchesLocalReply(f *accesslogv3.AccessLogFilter, status int) (bool, error) {
	switch {
	case f.GetStatusCodeFilter() != nil:
		c := f.GetStatusCodeFilter().GetComparison()
		v := int(c.GetValue().GetDefaultValue())
		switch c.GetOp() {
		case accesslogv3.ComparisonFilter_EQ:
			return status == v, nil
		case accesslogv3.ComparisonFilter_GE:
			return status >= v, nil
		case accesslogv3.ComparisonFilter_LE:
			return status <= v, nil
		}
	case f.GetResponseFlagFilter() != nil:
		flags := f.GetResponseFlagFilter().GetFlags()
		return len(flags) == 0 || slices.Contains(flags, "UAEX"), nil
	case f.GetAndFilter() != nil:
		for _, sub := range f.GetAndFilter().GetFilters() {
			if ok, err := matchesLocalReply(sub, status); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case f.GetOrFilter() != nil:
		for _, sub := range f.GetOrFilter().GetFilters() {
			if ok, err := matchesLocalReply(sub, status); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("local reply filter %v is not modelled", f)
}

// DynamicMetadataFromHeaders is the dynamic metadata Envoy records from an http_service answer
// (allow or deny): each header dynamic_metadata_from_headers matches, keyed by its lower-case
// name (ext_authz_http_impl.cc SuccessResponse).
func (p *Proxy) DynamicMetadataFromHeaders(answer http.Header) map[string]string {
	out := map[string]string{}
	ms := p.ExtAuthz.GetHttpService().GetAuthorizationResponse().GetDynamicMetadataFromHeaders().GetPatterns()
	for k, vs := range answer {
		if lower := strings.ToLower(k); matchAny(ms, lower) {
			out[lower] = vs[0]
		}
	}
	return out
}

// AcceptHeaders takes a client's request headers as Envoy's codecs do. Names are
// case-insensitive: Envoy's header map stores them lower-cased, so lines that differ only in
// case are one header with several values (source/common/http/http1/codec_impl.cc lower-cases
// each name as it is parsed); here they merge under the canonical key, their values appended.
// Then the connection manager's headers_with_underscores_action: DROP_HEADER removes every
// header whose name holds an underscore; REJECT_REQUEST refuses the request (ok false); ALLOW,
// the default, keeps them (codec_impl.cc and http2, checkHeaderNameForUnderscores).
func (p *Proxy) AcceptHeaders(h http.Header) (ok bool) {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if c := http.CanonicalHeaderKey(k); c != k {
			h[c] = append(h[c], h[k]...)
			delete(h, k)
		}
	}
	action := p.HCM.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction()
	for k := range h {
		if !strings.Contains(k, "_") {
			continue
		}
		switch action {
		case corev3.HttpProtocolOptions_DROP_HEADER:
			delete(h, k)
		case corev3.HttpProtocolOptions_REJECT_REQUEST:
			return false
		}
	}
	return true
}
