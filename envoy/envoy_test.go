package envoy

import (
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// Every extension type the configurations name, so that their Any fields resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
)

// loadBootstrap parses an Envoy YAML file the way Envoy does (YAML → JSON → proto, unknown
// fields rejected) and runs the protoc-gen-validate rules from Envoy's protos.
func loadBootstrap(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	js, err := yaml.YAMLToJSON(raw)
	require.NoError(t, err)
	var b bootstrapv3.Bootstrap
	require.NoError(t, protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(js, &b), "%s does not match Envoy's schema", path)
	require.NoError(t, b.ValidateAll(), "%s fails Envoy's validation rules", path)
	return &b
}

// frontProxy is what the cross-reference checks need from a bootstrap.
type frontProxy struct {
	boot     *bootstrapv3.Bootstrap
	hcm      *hcmv3.HttpConnectionManager
	extAuthz *extauthzv3.ExtAuthz
	clusters map[string]*clusterv3.Cluster
	routes   map[string]*routev3.Route // by path or prefix
}

func parseFrontProxy(t *testing.T, path string) *frontProxy {
	t.Helper()
	b := loadBootstrap(t, path)
	fp := &frontProxy{boot: b, clusters: map[string]*clusterv3.Cluster{}}
	for _, c := range b.GetStaticResources().GetClusters() {
		fp.clusters[c.GetName()] = c
	}
	ls := b.GetStaticResources().GetListeners()
	require.Len(t, ls, 1)
	assert.Equal(t, uint32(8080), ls[0].GetAddress().GetSocketAddress().GetPortValue(), "Envoy listens on :8080")
	filters := ls[0].GetFilterChains()[0].GetFilters()
	require.Len(t, filters, 1)
	fp.hcm = &hcmv3.HttpConnectionManager{}
	require.NoError(t, filters[0].GetTypedConfig().UnmarshalTo(fp.hcm))
	require.NoError(t, fp.hcm.ValidateAll())
	for _, f := range fp.hcm.GetHttpFilters() {
		if f.GetName() == "envoy.filters.http.ext_authz" {
			fp.extAuthz = &extauthzv3.ExtAuthz{}
			require.NoError(t, f.GetTypedConfig().UnmarshalTo(fp.extAuthz))
			require.NoError(t, fp.extAuthz.ValidateAll())
		}
	}
	require.NotNil(t, fp.extAuthz, "an ext_authz filter is configured")
	fp.routes = map[string]*routev3.Route{}
	for _, vh := range fp.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			fp.routes[r.GetMatch().GetPath()+r.GetMatch().GetPrefix()] = r
		}
	}
	return fp
}

// perRoute returns a route's ExtAuthzPerRoute (nil when unset).
func (fp *frontProxy) perRoute(t *testing.T, path string) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	r, ok := fp.routes[path]
	require.True(t, ok, "route %s exists", path)
	anyCfg, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
	if !ok {
		return nil
	}
	pr := &extauthzv3.ExtAuthzPerRoute{}
	require.NoError(t, anyCfg.UnmarshalTo(pr))
	require.NoError(t, pr.ValidateAll())
	return pr
}

// commonChecks are the rules both front proxies (gRPC and HTTP ext_authz) must satisfy.
func (fp *frontProxy) commonChecks(t *testing.T) {
	var names []string
	for _, f := range fp.hcm.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	assert.Equal(t, []string{"envoy.filters.http.cors", "envoy.filters.http.ext_authz", "envoy.filters.http.router"}, names,
		"filter order: cors answers preflights before ext_authz; router last")

	assert.Equal(t, uint32(9901), fp.boot.GetAdmin().GetAddress().GetSocketAddress().GetPortValue(), "admin on :9901")
	assert.False(t, fp.extAuthz.GetFailureModeAllow(), "fail closed")
	assert.Equal(t, int32(503), int32(fp.extAuthz.GetStatusOnError().GetCode()), "an authz outage is a 503, not a 403")

	require.NotEmpty(t, fp.hcm.GetAccessLog(), "an access log is configured")
	assert.True(t, fp.hcm.GetNormalizePath().GetValue(), "paths are normalised before path-based policy")
	assert.True(t, fp.hcm.GetMergeSlashes(), "repeated slashes are merged before path-based policy")

	for _, vh := range fp.hcm.GetRouteConfig().GetVirtualHosts() {
		require.Contains(t, vh.GetTypedPerFilterConfig(), "envoy.filters.http.cors", "CORS policy on the virtual host")
		for _, r := range vh.GetRoutes() {
			assert.Contains(t, fp.clusters, r.GetRoute().GetCluster(), "route %s names an existing cluster", r.GetMatch())
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
	c, ok := fp.clusters[cluster]
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

	grpcSvc := fp.extAuthz.GetGrpcService()
	require.NotNil(t, grpcSvc, "ext_authz uses a gRPC service")
	assert.Equal(t, "V3", fp.extAuthz.GetTransportApiVersion().String())
	cluster := grpcSvc.GetEnvoyGrpc().GetClusterName()
	assert.Equal(t, "authz", cluster)
	require.NotNil(t, grpcSvc.GetTimeout(), "an explicit timeout (Envoy's default is 200ms)")
	assert.Equal(t, AuthzGRPCPort, fp.port(t, cluster), "ext_authz points at the authz gRPC port")

	c := fp.clusters[cluster]
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

	hs := fp.extAuthz.GetHttpService()
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
	assert.Contains(t, patterns(hs.GetAuthorizationRequest().GetAllowedHeaders().GetPatterns()), "authorization")
	assert.Contains(t, patterns(hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns()), "x-authz-",
		"identity headers reach the upstream")
	assert.Contains(t, patterns(hs.GetAuthorizationResponse().GetAllowedClientHeaders().GetPatterns()), "www-authenticate")

	ep := fp.clusters[cluster].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint()
	assert.Equal(t, uint32(9003), ep.GetHealthCheckConfig().GetPortValue(), "health checks go to the admin port")
	assert.Equal(t, "/readyz", fp.clusters[cluster].GetHealthChecks()[0].GetHttpHealthCheck().GetPath())
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
