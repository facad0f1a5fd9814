package envoy

import (
	"regexp"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/platformauth/envoy-okta-authz/envoy/envoytest"
)

// frontProxy is a loaded configuration (envoytest.Load: Envoy's schema and validation rules)
// with the lookups the cross-reference checks need.
type frontProxy struct {
	*envoytest.Proxy
	routes map[string]*routev3.Route // by path or prefix
}

func parseFrontProxy(t *testing.T, path string) *frontProxy {
	t.Helper()
	p, err := envoytest.Load(path)
	require.NoError(t, err)
	require.NotNil(t, p.ExtAuthz, "an ext_authz filter is configured")
	ls := p.Bootstrap.GetStaticResources().GetListeners()
	require.Len(t, ls, 1)
	assert.Equal(t, uint32(8080), ls[0].GetAddress().GetSocketAddress().GetPortValue(), "Envoy listens on :8080")
	fp := &frontProxy{Proxy: p, routes: map[string]*routev3.Route{}}
	for _, r := range p.Routes {
		fp.routes[r.GetMatch().GetPath()+r.GetMatch().GetPrefix()] = r
	}
	return fp
}

// perRoute returns a route's ExtAuthzPerRoute (nil when unset).
func (fp *frontProxy) perRoute(t *testing.T, path string) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	r, ok := fp.routes[path]
	require.True(t, ok, "route %s exists", path)
	pr, err := envoytest.PerRoute(r)
	require.NoError(t, err)
	return pr
}

// commonChecks are the rules both front proxies (gRPC and HTTP ext_authz) must satisfy.
func (fp *frontProxy) commonChecks(t *testing.T) {
	var names []string
	for _, f := range fp.HCM.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	assert.Equal(t, []string{"envoy.filters.http.cors", "envoy.filters.http.ext_authz", "envoy.filters.http.router"}, names,
		"filter order: cors answers preflights before ext_authz; router last")

	assert.Equal(t, uint32(9901), fp.Bootstrap.GetAdmin().GetAddress().GetSocketAddress().GetPortValue(), "admin on :9901")
	assert.False(t, fp.ExtAuthz.GetFailureModeAllow(), "fail closed")
	assert.Equal(t, int32(503), int32(fp.ExtAuthz.GetStatusOnError().GetCode()), "an authz outage is a 503, not a 403")

	require.NotEmpty(t, fp.HCM.GetAccessLog(), "an access log is configured")
	assert.True(t, fp.HCM.GetNormalizePath().GetValue(), "paths are normalised before path-based policy")
	assert.True(t, fp.HCM.GetMergeSlashes(), "repeated slashes are merged before path-based policy")
	assert.True(t, fp.HCM.GetStripTrailingHostDot(), "a trailing dot chooses no other virtual host than the service judged by")
	assert.True(t, fp.HCM.GetRouteConfig().GetIgnorePortInHostMatching(), "nor does a port (the service's hosts: ignore it)")
	assert.Equal(t, hcmv3.HttpConnectionManager_REJECT_REQUEST, fp.HCM.GetPathWithEscapedSlashesAction(),
		"an encoded / or \\ is refused, as the authz service refuses it (Envoy's default keeps it)")
	assert.True(t, fp.HCM.GetUseRemoteAddress().GetValue(), "edge proxy: client x-request-id and x-envoy-* are not trusted")
	assert.Equal(t, corev3.HttpProtocolOptions_DROP_HEADER, fp.HCM.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(),
		"x_authz_subject never reaches an upstream that reads _ as -")
	assert.False(t, fp.HCM.GetPreserveExternalRequestId())
	logFormat := fp.HCM.GetAccessLog()[0].GetTypedConfig().String()
	assert.NotContains(t, logFormat, "X-ENVOY-ORIGINAL-PATH", "the logged path is the one Envoy routed, not a header")
	// A query string may hold a token (credentials: query:NAME): no operator that logs one.
	for _, op := range regexp.MustCompile(`%[A-Z_]+(\([^)]*\))?(:\d+)?%`).FindAllString(logFormat, -1) {
		assert.NotRegexp(t, `^%(REQ\((:PATH|X-ENVOY-ORIGINAL-PATH|X-ORIGINAL-URI|X-FORWARDED-URI|REFERER)|PATH(\((WQ)?(:[A-Z_]*)?\))?(:\d+)?%|QUERY_PARAM|REQ_WITHOUT_QUERY)`, op,
			"the access log's %s may hold a query string", op)
	}
	assert.Contains(t, logFormat, "%PATH(NQ:PATH):256%")
	require.Len(t, fp.HCM.GetUpgradeConfigs(), 1)
	assert.Equal(t, "websocket", fp.HCM.GetUpgradeConfigs()[0].GetUpgradeType(), "WebSockets pass (after ext_authz)")
	assert.Equal(t, []string{"x-authz-subject", "x-authz-client-id", "x-authz-user-id", "x-authz-scopes", "x-authz-claims"},
		fp.routes["/healthz"].GetRequestHeadersToRemove(), "the route without ext_authz drops client identity headers")

	for _, vh := range fp.HCM.GetRouteConfig().GetVirtualHosts() {
		require.Contains(t, vh.GetTypedPerFilterConfig(), "envoy.filters.http.cors", "CORS policy on the virtual host")
		for _, r := range vh.GetRoutes() {
			assert.Contains(t, fp.Clusters, r.GetRoute().GetCluster(), "route %s names an existing cluster", r.GetMatch())
		}
	}
	assert.True(t, fp.perRoute(t, "/healthz").GetDisabled(), "/healthz bypasses ext_authz")
	assert.Equal(t, "demoapi", fp.routes["/healthz"].GetRoute().GetCluster())
	assert.Equal(t, uint32(3000), fp.port(t, "demoapi"), "the demo API listens on :3000")
	for _, path := range []string{"/api/messages", "/secure", "/"} {
		assert.False(t, fp.perRoute(t, path).GetDisabled(), "%s is protected", path)
	}
}

func (fp *frontProxy) port(t *testing.T, cluster string) uint32 {
	t.Helper()
	c, ok := fp.Clusters[cluster]
	require.True(t, ok, "cluster %s exists", cluster)
	eps := c.GetLoadAssignment().GetEndpoints()
	require.NotEmpty(t, eps)
	return eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
}

func TestEnvoyGRPCConfig(t *testing.T) {
	fp := parseFrontProxy(t, "envoy.yaml")
	fp.commonChecks(t)

	for path, policy := range map[string]string{"/api/messages": "messages", "/secure": "secure"} {
		pr := fp.perRoute(t, path)
		require.NotNil(t, pr, "%s configures ext_authz per route", path)
		assert.Equal(t, policy, pr.GetCheckSettings().GetContextExtensions()["policy"], "%s names its policy", path)
	}

	grpcSvc := fp.ExtAuthz.GetGrpcService()
	require.NotNil(t, grpcSvc, "ext_authz uses a gRPC service")
	assert.Equal(t, "V3", fp.ExtAuthz.GetTransportApiVersion().String())
	cluster := grpcSvc.GetEnvoyGrpc().GetClusterName()
	assert.Equal(t, "authz", cluster)
	require.NotNil(t, grpcSvc.GetTimeout(), "an explicit timeout (Envoy's default is 200ms)")
	assert.Equal(t, AuthzGRPCPort, fp.port(t, cluster), "ext_authz points at the authz gRPC port")

	c := fp.Clusters[cluster]
	opts, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	require.True(t, ok, "the authz cluster sets HttpProtocolOptions")
	hpo := &upstreamhttpv3.HttpProtocolOptions{}
	require.NoError(t, opts.UnmarshalTo(hpo))
	assert.NotNil(t, hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions(), "gRPC needs HTTP/2 to the authz cluster")
	require.NotEmpty(t, c.GetHealthChecks())
	assert.Equal(t, "envoy.service.auth.v3.Authorization", c.GetHealthChecks()[0].GetGrpcHealthCheck().GetServiceName(),
		"the cluster is health-checked with gRPC health")
}

func TestEnvoyHTTPConfig(t *testing.T) {
	fp := parseFrontProxy(t, "envoy-http.yaml")
	fp.commonChecks(t)

	hs := fp.ExtAuthz.GetHttpService()
	require.NotNil(t, hs, "ext_authz uses the HTTP decision API")
	assert.Equal(t, "/authz", hs.GetPathPrefix())
	cluster := hs.GetServerUri().GetCluster()
	assert.Equal(t, uint32(9002), fp.port(t, cluster), "http_service points at the HTTP decision API port")
	require.NotNil(t, hs.GetServerUri().GetTimeout())

	patterns := func(ms []*matcherv3.StringMatcher) (out []string) {
		for _, m := range ms {
			out = append(out, m.GetExact()+m.GetPrefix())
		}
		return out
	}
	assert.Contains(t, patterns(fp.ExtAuthz.GetAllowedHeaders().GetPatterns()), "x-authz-",
		"the service sees client identity headers, to name them for removal")
	assert.Contains(t, patterns(hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns()), "x-authz-",
		"identity headers reach the upstream")
	// What crosses, and what does not, is tested on behaviour in behaviour_test.go.

	ep := fp.Clusters[cluster].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint()
	assert.Equal(t, uint32(9003), ep.GetHealthCheckConfig().GetPortValue(), "health checks go to the admin port")
	assert.Equal(t, "/readyz", fp.Clusters[cluster].GetHealthChecks()[0].GetHttpHealthCheck().GetPath())
}

// AuthzGRPCPort is the authz gRPC port the compose file and Envoy agree on.
const AuthzGRPCPort = uint32(9001)

func TestLoaderRejectsMistakes(t *testing.T) {
	// The loader must catch what Envoy would: a misspelt field, and a value its rules forbid.
	var b bootstrapv3.Bootstrap
	err := protojson.Unmarshal([]byte(`{"static_resources":{"clusters":[{"name":"x","conect_timeout":"1s"}]}}`), &b)
	assert.Error(t, err, "unknown field")
	b = bootstrapv3.Bootstrap{StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{Name: ""}}}}
	assert.Error(t, b.ValidateAll(), "an empty cluster name breaks a rule")
}

// TestEnvoyMTLSConfig: the certificate-bound token front proxy passes the client certificate
// of a mutual-TLS connection to ext_authz.
func TestEnvoyMTLSConfig(t *testing.T) {
	p, err := envoytest.Load("envoy-mtls.yaml")
	require.NoError(t, err)
	assert.True(t, p.ExtAuthz.GetIncludePeerCertificate(), "source.certificate reaches the service")
	assert.Equal(t, "authz", p.ExtAuthz.GetGrpcService().GetEnvoyGrpc().GetClusterName())
	chain := p.Bootstrap.GetStaticResources().GetListeners()[0].GetFilterChains()[0]
	tlsCtx := &tlsv3.DownstreamTlsContext{}
	require.NoError(t, chain.GetTransportSocket().GetTypedConfig().UnmarshalTo(tlsCtx))
	require.NoError(t, tlsCtx.ValidateAll())
	assert.True(t, tlsCtx.GetRequireClientCertificate().GetValue(), "mutual TLS is required")
	assert.NotEmpty(t, tlsCtx.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename())
	assert.Equal(t, hcmv3.HttpConnectionManager_REJECT_REQUEST, p.HCM.GetPathWithEscapedSlashesAction())
	assert.Equal(t, hcmv3.HttpConnectionManager_SANITIZE, p.HCM.GetForwardClientCertDetails())
	assert.Equal(t, corev3.HttpProtocolOptions_DROP_HEADER, p.HCM.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction())
	pr, err := envoytest.PerRoute(p.Route("/healthz"))
	require.NoError(t, err)
	assert.True(t, pr.GetDisabled())
	assert.NotEmpty(t, p.Route("/healthz").GetRequestHeadersToRemove())
}
