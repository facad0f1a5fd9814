// Package grpcapi is Envoy's external authorization over gRPC
// (envoy.service.auth.v3.Authorization/Check), and Istio's envoyExtAuthzGrpc provider: it reads
// the request a CheckRequest describes into an authz.Request, asks authz.Authorizer.Decide, and
// writes the Decision as a CheckResponse — never an empty one, which Envoy would read as an
// allow. It trusts Envoy's view of the request (method, :authority, path, headers) and nothing
// else; it is the only package that speaks go-control-plane's auth API (envoytest aside).
package grpcapi

import (
	"context"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
	"go.opentelemetry.io/otel/trace"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Server is the Envoy ext_authz front end (envoy.service.auth.v3.Authorization). It only
// adapts: CheckRequest → authz.Request, authz.Decision → CheckResponse.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	authz  *authz.Authorizer
	tracer trace.Tracer
	// denials memoises the responses of denials that carry no identity: they depend only on
	// the outcome, reason, scope and rule, and a flood of bad requests should cost little.
	denials sync.Map // denialKey → *authv3.CheckResponse
	// allows memoises the allow responses of the most recently used verified tokens (the
	// claims are shared with the token cache, so the pointer identifies the token). Bounded:
	// it holds the hot set, not every cached token. Nil when tokens are not cached.
	allows *lru.Cache[*token.Claims, allowMemo]
	memoMu sync.Mutex // serialises changes to allows
	// wire holds the encodings of the memoised responses.
	wire *wireCodec
}

// allowMemoSize bounds the memoised allow responses (about 2 KiB each).
const allowMemoSize = 1024

// allowMemo is a token's allow response under one rule and identity: a policy reload makes
// new identities, so a response built under the old policy is never reused under the new one.
type allowMemo struct {
	rule     string
	identity *policy.Identity
	resp     *authv3.CheckResponse
}

func (m allowMemo) fits(d *authz.Decision) bool {
	return m.rule == d.Rule && m.identity == d.Identity()
}

type denialKey struct {
	outcome             authz.Outcome
	reason, scope, rule string
	dpop                bool
}

// New returns the ext_authz service for a.
func New(a *authz.Authorizer) *Server {
	s := &Server{authz: a, tracer: authz.NewTracer(), wire: newWireCodec()}
	// Without a token cache every check has claims of its own: nothing to memoise.
	if a.CachesTokens() {
		// Cannot fail: the size is positive.
		s.allows, _ = lru.NewWithEvict(allowMemoSize, func(_ *token.Claims, m allowMemo) { s.wire.forget(m.resp) })
	}
	return s
}

// Check answers Envoy. A denial is a normal response; it never returns an error or an empty
// response (an empty CheckResponse would allow).
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	// One policy for the whole request: the identity headers it names and the decision.
	pol := s.authz.Policy()
	r, clientIdentity := requestFromCheck(req, pol)
	r.Policy = pol
	ctx, span := authz.StartSpan(ctx, s.tracer, "authz.Check", checkCarrier{req.GetAttributes().GetRequest().GetHttp()})
	d := s.authz.Decide(ctx, r)
	authz.EndSpan(span, &d)
	return s.response(&d, clientIdentity), nil
}

// response returns the CheckResponse for d, reusing a memoised one where the answer depends
// only on things it is keyed by. Responses are never modified after they are built, so sharing
// them between concurrent calls is safe.
func (s *Server) response(d *authz.Decision, clientIdentity []string) *authv3.CheckResponse {
	switch {
	case d.Outcome != authz.Allow && d.Claims == nil:
		key := denialKey{d.Outcome, d.Reason.Code, d.Scope, d.Rule, d.DPoP}
		if r, ok := s.denials.Load(key); ok {
			return r.(*authv3.CheckResponse)
		}
		resp := checkResponse(d, s.authz.Challenges(), nil)
		if prev, loaded := s.denials.LoadOrStore(key, resp); loaded {
			return prev.(*authv3.CheckResponse)
		}
		s.wire.remember(resp)
		return resp
	case d.Outcome == authz.Allow && s.allows != nil && d.Claims != nil && !d.DryRun() && len(clientIdentity) == 0 &&
		d.Credential == token.Authorization && !d.CookieChanged():
		// (A token from another place, or a token cookie the upstream must not get, makes the
		// answer depend on the request: its query, its other cookies.)
		if m, ok := s.allows.Get(d.Claims); ok && m.fits(d) {
			return m.resp
		}
		return s.memoiseAllow(d)
	}
	return checkResponse(d, s.authz.Challenges(), clientIdentity)
}

// memoiseAllow builds the allow response for d and memoises it with its encoding. Changes to
// the memo are serialised so that every encoding stored leaves with its response: on eviction
// (the LRU's callback) or on replacement under another rule or identity (here; replacing is
// no eviction).
func (s *Server) memoiseAllow(d *authz.Decision) *authv3.CheckResponse {
	resp := checkResponse(d, s.authz.Challenges(), nil)
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	if m, ok := s.allows.Peek(d.Claims); ok {
		if m.fits(d) {
			return m.resp // memoised meanwhile by another call
		}
		s.wire.forget(m.resp)
	}
	s.wire.remember(resp)
	s.allows.Add(d.Claims, allowMemo{rule: d.Rule, identity: d.Identity(), resp: resp})
	return resp
}

// requestFromCheck extracts the request from Envoy's attributes, reading headers from either
// the joined `headers` map or the raw `header_map` (encode_raw_headers: true). It also returns
// the names of client-sent identity headers, which must not reach the upstream.
func requestFromCheck(req *authv3.CheckRequest, pol *policy.Policy) (*authz.Request, []string) {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	r := &authz.Request{
		Frontend:          "grpc",
		Method:            h.GetMethod(),
		Host:              h.GetHost(),
		Path:              h.GetPath(),
		Scheme:            h.GetScheme(),
		ContextExtensions: attrs.GetContextExtensions(),
		// URL-encoded PEM, with include_peer_certificate on the ext_authz filter.
		ClientCert: attrs.GetSource().GetCertificate(),
		Headers:    checkHeaders{h},
	}
	var identity []string
	// An HTTP/1 request without Content-Length or Transfer-Encoding has no body; HTTP/2 and 3
	// end a request without one by a flag the CheckRequest does not carry.
	r.Body = policy.BodyNone
	if !strings.HasPrefix(h.GetProtocol(), "HTTP/1") {
		r.Body = policy.BodyUnknown
	}
	visit := func(k, v string) {
		k = strings.ToLower(k)
		switch {
		case k == "authorization":
			r.Authorization = append(r.Authorization, v)
		case k == "dpop":
			r.DPoP = append(r.DPoP, v)
		case k == "x-request-id":
			r.RequestID = v
		case k == "content-type":
			r.ContentType = v
		case k == "content-length" && strings.TrimSpace(v) != "0", k == "transfer-encoding":
			r.Body = policy.BodyPresent
		case policy.IsMethodOverrideHeader(k):
			r.MethodOverrides = append(r.MethodOverrides, v)
		case pol.IsIdentityHeader(k):
			identity = append(identity, k)
		}
	}
	for k, v := range h.GetHeaders() {
		visit(k, v)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		visit(hv.GetKey(), rawOrValue(hv))
	}
	return r, identity
}

// checkHeaders are a CheckRequest's headers in whichever form Envoy sent them, read by
// lower-case name (Envoy lower-cases them), only when a rule asks: nothing is copied for a
// request no condition or credential place reads.
type checkHeaders struct {
	h *authv3.AttributeContext_HttpRequest
}

func (c checkHeaders) Values(name string) []string {
	var out []string
	if v, ok := c.h.GetHeaders()[name]; ok {
		out = append(out, v)
	}
	for _, hv := range c.h.GetHeaderMap().GetHeaders() {
		if strings.EqualFold(hv.GetKey(), name) {
			out = append(out, rawOrValue(hv))
		}
	}
	return out
}

func (c checkHeaders) Each(fn func(name, value string)) {
	for k, v := range c.h.GetHeaders() {
		fn(k, v)
	}
	for _, hv := range c.h.GetHeaderMap().GetHeaders() {
		fn(strings.ToLower(hv.GetKey()), rawOrValue(hv))
	}
}

// rawOrValue is a header_map entry's value: encode_raw_headers puts it in raw_value.
func rawOrValue(hv *corev3.HeaderValue) string {
	if raw := hv.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return hv.GetValue()
}

// checkCarrier lets a propagator read the original request's trace headers straight from the
// CheckRequest, in whichever form Envoy sent them; nothing is copied unless a propagator asks
// (with tracing off, none does).
type checkCarrier struct {
	h *authv3.AttributeContext_HttpRequest
}

func (c checkCarrier) Get(key string) string {
	if v, ok := c.h.GetHeaders()[key]; ok {
		return v
	}
	for _, hv := range c.h.GetHeaderMap().GetHeaders() {
		if strings.EqualFold(hv.GetKey(), key) {
			return rawOrValue(hv)
		}
	}
	return ""
}

func (checkCarrier) Set(string, string) {} // only ever extracted from

func (c checkCarrier) Keys() []string {
	var keys []string
	for k := range c.h.GetHeaders() {
		keys = append(keys, k)
	}
	for _, hv := range c.h.GetHeaderMap().GetHeaders() {
		keys = append(keys, strings.ToLower(hv.GetKey()))
	}
	return keys
}

func checkResponse(d *authz.Decision, ch authz.Challenges, clientIdentity []string) *authv3.CheckResponse {
	resp := &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(d.Outcome.GRPCCode())},
		DynamicMetadata: decisionMetadata(d),
	}
	if d.Outcome != authz.Allow {
		resp.Status.Message = d.Reason.Code
		resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.HTTPStatus())},
			Headers: headerOptions(d.ClientHeaders(ch)),
			Body:    string(d.Body()),
		}}
		return resp
	}
	upstream := d.UpstreamHeaders()
	if cookie, set := d.UpstreamCookie(); set {
		// The request's other cookies: Envoy replaces every cookie header with this one.
		upstream = append(slices.Clip(upstream), authz.Header{Name: "cookie", Value: cookie})
	}
	ok := &authv3.OkHttpResponse{
		Headers:         headerOptions(upstream),
		HeadersToRemove: d.RemovedHeaders(upstream, clientIdentity),
	}
	if name := d.RemovedQueryParameter(); name != "" {
		// Envoy removes the parameter by its name as sent (the token's is never percent-encoded:
		// token.ParsePlace), and rebuilds the query from the rest.
		ok.QueryParametersToRemove = []string{name}
	}
	resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: ok}
	return resp
}

// headerOptions leaves the deprecated `append` unset and says OVERWRITE_IF_EXISTS_OR_ADD, which
// every Envoy version reads as "overwrite".
func headerOptions(hs []authz.Header) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, 0, len(hs))
	for _, h := range hs {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return out
}

// decisionMetadata is emitted as dynamic metadata under envoy.filters.http.ext_authz, for
// Envoy's access log: the decision's log fields.
func decisionMetadata(d *authz.Decision) *structpb.Struct {
	fields := d.MetadataFields()
	f := make(map[string]*structpb.Value, len(fields))
	for _, h := range fields {
		f[h.Name] = structpb.NewStringValue(h.Value)
	}
	return &structpb.Struct{Fields: f}
}
